/* Fast path of tether's ETF decoder.
 *
 * Decodes the tags that make up bulk data (integers, floats, atoms, binaries,
 * tuples, lists, maps, big integers) iteratively, with every declared length
 * checked against the bytes present before anything is allocated.
 *
 * Anything else -- a rare tag, malformed input, an exceeded limit -- raises
 * Fallback, and tether/_etf decodes the term again in Python, which owns the
 * precise typed error (with the path at fault) and the rare tags. The two
 * decoders are tested against each other, so they return identical values.
 */
#include "common.h"

#include <math.h>

enum { K_LIST, K_TAIL, K_TUPLE, K_MAP };

/* Atoms a process names are few: the shared table is cleared when it reaches this. */
#define ATOM_INTERN_MAX 65536
/* A call's atom cache starts with 2**ATOM_CACHE_FIRST_BITS slots. */
#define ATOM_CACHE_FIRST_BITS 6
/* Larger big integers take the Python path (its int conversion is quadratic too, but reports errors). */
#define BIG_INT_MAX_BYTES 4096

/* ------------------------------------------------------------------ atoms */

static void atoms_free(AtomCache *c) {
    for (Py_ssize_t i = 0; i < c->cap; i++) Py_XDECREF(c->slots[i].value);
    PyMem_Free(c->slots);
}

/* FNV-1a from a per-process basis: atom names come from the peer, and without
 * the seed it cannot choose names that share slots. Slots take the top bits
 * of the hash, which depend on every bit of the basis (the low ones only on
 * its low bits). */
static uint64_t hash_bytes(const State *st, const unsigned char *p, Py_ssize_t n, int latin) {
    uint64_t h = 1469598103934665603ULL ^ st->seed ^ (uint64_t)latin;
    for (Py_ssize_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}

static inline Py_ssize_t atom_slot(uint64_t h, int bits) { return (Py_ssize_t)(h >> (64 - bits)); }

static int atoms_grow(const State *st, AtomCache *c) {
    int bits = c->cap ? c->bits + 1 : ATOM_CACHE_FIRST_BITS;
    Py_ssize_t ncap = (Py_ssize_t)1 << bits;
    AtomSlot *ns = PyMem_Calloc((size_t)ncap, sizeof(AtomSlot));
    if (!ns) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < c->cap; i++) {
        AtomSlot *s = &c->slots[i];
        if (!s->value) continue;
        uint64_t h = hash_bytes(st, s->p, s->n, s->latin);
        Py_ssize_t j = atom_slot(h, bits);
        while (ns[j].value) j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    PyMem_Free(c->slots);
    c->slots = ns;
    c->cap = ncap;
    c->bits = bits;
    return 0;
}

/* New reference to the shared Atom named by the UTF-8 text p[0:n], or NULL
 * with Fallback/another error set. A small call names a handful of atoms,
 * and building each Atom object costs more than decoding the rest of the
 * term; atoms are immutable, so one object per name serves every call. */
static PyObject *interned_atom(State *st, const unsigned char *p, Py_ssize_t n) {
    PyObject *key = PyBytes_FromStringAndSize((const char *)p, n);
    if (!key) return NULL;
    PyObject *value = PyDict_GetItemWithError(st->atom_intern, key);
    if (value) { Py_INCREF(value); Py_DECREF(key); return value; }
    if (PyErr_Occurred()) { Py_DECREF(key); return NULL; }
    PyObject *name = PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (!name) { Py_DECREF(key); PyErr_Clear(); PyErr_SetString(st->fallback, "atom text"); return NULL; }
    if (PyUnicode_GET_LENGTH(name) > 255) {
        Py_DECREF(key); Py_DECREF(name); PyErr_SetString(st->fallback, "atom length"); return NULL;
    }
    value = PyObject_CallOneArg(st->atom_type, name);
    Py_DECREF(name);
    if (value) {
        if (PyDict_GET_SIZE(st->atom_intern) >= ATOM_INTERN_MAX) PyDict_Clear(st->atom_intern);
        if (PyDict_SetItem(st->atom_intern, key, value) < 0) Py_CLEAR(value);
    }
    Py_DECREF(key);
    return value;
}

/* Keep value (a new reference) in slot j of this call's cache; return a new reference to it. */
static PyObject *atom_store(AtomCache *c, Py_ssize_t j, const unsigned char *p, Py_ssize_t n, int latin,
                            PyObject *value) {
    c->slots[j].p = p;
    c->slots[j].n = n;
    c->slots[j].latin = latin;
    c->slots[j].value = value;
    c->used++;
    Py_INCREF(value);
    return value;
}

/* The value of a new atom whose text needs decoding first (Latin-1 beyond ASCII, str atoms...). */
static PyObject *atom_slow(Ctx *ctx, const unsigned char *p, Py_ssize_t n, int latin) {
    State *st = ctx->st;
    PyObject *name = latin ? PyUnicode_DecodeLatin1((const char *)p, n, NULL)
                           : PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (!name) { PyErr_Clear(); PyErr_SetString(st->fallback, "atom text"); return NULL; }
    if (PyUnicode_GET_LENGTH(name) > 255) { Py_DECREF(name); PyErr_SetString(st->fallback, "atom length"); return NULL; }
    PyObject *value;
    if (PyUnicode_CompareWithASCIIString(name, "true") == 0) value = Py_NewRef(Py_True);
    else if (PyUnicode_CompareWithASCIIString(name, "false") == 0) value = Py_NewRef(Py_False);
    else if (ctx->none_atom && PyUnicode_Compare(name, ctx->none_atom) == 0) value = Py_NewRef(Py_None);
    else if (ctx->atoms_str) value = Py_NewRef(name);
    else value = PyObject_CallOneArg(st->atom_type, name);
    Py_DECREF(name);
    return value;
}

PyObject *atom_value(Ctx *ctx, const unsigned char *p, Py_ssize_t n, int latin) {
    AtomCache *c = &ctx->atoms;
    if (c->used * 2 >= c->cap && atoms_grow(ctx->st, c) < 0) return NULL;
    uint64_t h = hash_bytes(ctx->st, p, n, latin);
    Py_ssize_t j = atom_slot(h, c->bits);
    while (c->slots[j].value) {
        AtomSlot *s = &c->slots[j];
        if (s->n == n && s->latin == latin && memcmp(s->p, p, (size_t)n) == 0) return Py_NewRef(s->value);
        j = (j + 1) & (c->cap - 1);
    }
    if (c->used >= ctx->max_atoms) { PyErr_SetString(ctx->st->fallback, "atoms"); return NULL; }
    int ascii = 1;
    for (Py_ssize_t i = 0; i < n && ascii; i++) ascii = p[i] < 0x80;
    PyObject *value;
    /* Latin-1 and UTF-8 spell ASCII alike; other Latin-1 atoms take the slow path. */
    if (!ctx->atoms_str && (ascii || !latin) && (ctx->none_utf8 || !ctx->none_atom)) {
        if (n == 4 && memcmp(p, "true", 4) == 0) value = Py_NewRef(Py_True);
        else if (n == 5 && memcmp(p, "false", 5) == 0) value = Py_NewRef(Py_False);
        else if (ctx->none_utf8 && n == ctx->none_len && memcmp(p, ctx->none_utf8, (size_t)n) == 0) value = Py_NewRef(Py_None);
        else value = interned_atom(ctx->st, p, n);
    } else {
        value = atom_slow(ctx, p, n, latin);
    }
    if (!value) return NULL;
    return atom_store(c, j, p, n, latin, value);
}

/* ------------------------------------------------------------------ map keys */

/* Map keys repeat: every metadata block names the same dozen, every row of a
 * table the same few. Decoding each afresh builds an object and later its
 * hash; the cache hands back one immutable key (its hash kept; a str seen
 * twice is interned, the very object a literal in Python code is) for the same bytes.
 * Direct-mapped on a seeded hash, so a peer cannot choose keys that keep
 * evicting each other, and a collision only costs a miss (as does any key of
 * a map over KEY_CACHE_PAIRS, which skips the cache). The slot keeps a
 * copy of the bytes: a hit compares them all, so no key is ever returned for
 * other bytes. Only called with the GIL held, and nothing between lookup and
 * store runs Python code. NULL with an error set (invalid UTF-8 for a str). */
static PyObject *cached_key(State *st, const unsigned char *p, Py_ssize_t n, int as_bytes) {
    enum { WORDS = KEY_CACHE_TEXT / 8 };
    uint64_t text[WORDS] = {0};
    memcpy(text, p, (size_t)n);
    uint64_t h = st->seed ^ ((uint64_t)n << 1 | (uint64_t)as_bytes);  /* seeded from the start: see above */
    for (Py_ssize_t i = 0; i < (n + 7) / 8; i++) h = (h ^ text[i]) * 0x9e3779b97f4a7c15ULL;
    h = keyed_mix(st, h);
    KeySlot *s = &st->keys[h >> (64 - KEY_CACHE_BITS)];
    if (s->value && s->n == n && s->as_bytes == as_bytes) {
        uint64_t diff = 0;
        for (int i = 0; i < WORDS; i++) diff |= s->text[i] ^ text[i];
        if (!diff) {
#if PY_VERSION_HEX < 0x030C0000
            /* Interned at its second sighting: interning every key of a map of unique keys doubles its time.
             * Not from 3.12 on, where an interned str may be immortal: a peer's keys would never be freed. */
            if (!as_bytes && !PyUnicode_CHECK_INTERNED(s->value)) PyUnicode_InternInPlace(&s->value);
#endif
            return Py_NewRef(s->value);
        }
    }
    PyObject *value = as_bytes ? PyBytes_FromStringAndSize((const char *)p, n)
                               : PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (!value) return NULL;
    Py_XSETREF(s->value, Py_NewRef(value));
    s->n = n;
    s->as_bytes = as_bytes;
    memcpy(s->text, text, sizeof(text));
    return value;
}

void keys_clear(State *st) {
    if (!st->keys) return;
    for (Py_ssize_t i = 0; i < ((Py_ssize_t)1 << KEY_CACHE_BITS); i++) Py_CLEAR(st->keys[i].value);
}

/* ------------------------------------------------------------------ scalars */

static PyObject *fall(Ctx *ctx) {
    PyErr_SetString(ctx->st->fallback, "fallback");
    return NULL;
}

#define NEED(k) do { if ((Py_ssize_t)(k) > end - pos) return fall(ctx); } while (0)

static PyObject *big_int(const unsigned char *p, Py_ssize_t n, int sign) {
    if (n <= 8) {
        unsigned long long v = 0;
        for (Py_ssize_t i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
        if (!sign) return PyLong_FromUnsignedLongLong(v);
        if (v <= (unsigned long long)LLONG_MAX) return PyLong_FromLongLong(-(long long)v);
        PyObject *pos = PyLong_FromUnsignedLongLong(v);
        if (!pos) return NULL;
        PyObject *neg = PyNumber_Negative(pos);
        Py_DECREF(pos);
        return neg;
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)p, n);
    if (!bytes) return NULL;
    PyObject *v = PyObject_CallMethod((PyObject *)&PyLong_Type, "from_bytes", "Os", bytes, "little");
    Py_DECREF(bytes);
    if (v && sign) { PyObject *neg = PyNumber_Negative(v); Py_DECREF(v); v = neg; }
    return v;
}

static PyObject *read_big(Ctx *ctx, unsigned char tag, Py_ssize_t *ppos) {
    const unsigned char *buf = ctx->buf;
    const Py_ssize_t end = ctx->end;
    Py_ssize_t pos = *ppos, n;
    if (tag == SMALL_BIG_EXT) { NEED(2); n = buf[pos]; pos += 1; }
    else { NEED(5); n = (Py_ssize_t)be32(buf + pos); pos += 4; }
    int sign = buf[pos++];
    if (sign > 1) return fall(ctx);
    NEED(n);
    if (n > BIG_INT_MAX_BYTES) return fall(ctx);
    *ppos = pos + n;
    return big_int(buf + pos, n, sign);
}

static PyObject *read_float(Ctx *ctx, Py_ssize_t *ppos) {
    const unsigned char *buf = ctx->buf;
    const Py_ssize_t end = ctx->end;
    Py_ssize_t pos = *ppos;
    NEED(8);
    uint64_t bits = ((uint64_t)be32(buf + pos) << 32) | be32(buf + pos + 4);
    double d;
    memcpy(&d, &bits, 8);
    if (!isfinite(d)) return fall(ctx);
    *ppos = pos + 8;
    return PyFloat_FromDouble(d);
}

static PyObject *read_atom(Ctx *ctx, unsigned char tag, Py_ssize_t *ppos) {
    const unsigned char *buf = ctx->buf;
    const Py_ssize_t end = ctx->end;
    Py_ssize_t pos = *ppos, n;
    if (tag == SMALL_ATOM_UTF8_EXT || tag == SMALL_ATOM_EXT) { NEED(1); n = buf[pos]; pos += 1; }
    else { NEED(2); n = (buf[pos] << 8) | buf[pos + 1]; pos += 2; }
    NEED(n);
    *ppos = pos + n;
    return atom_value(ctx, buf + pos, n, tag == SMALL_ATOM_EXT || tag == ATOM_EXT);
}

/* A read-only view of view_base[lo:hi]. */
static PyObject *view_slice(PyObject *base, Py_ssize_t lo, Py_ssize_t hi) {
    PyObject *a = PyLong_FromSsize_t(lo), *b = PyLong_FromSsize_t(hi);
    PyObject *slice = (a && b) ? PySlice_New(a, b, NULL) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    PyObject *value = slice ? PyObject_GetItem(base, slice) : NULL;
    Py_XDECREF(slice);
    return value;
}

/* The binary at *ppos; key: it is a map key, which decodes through the key cache when short. */
static PyObject *read_binary(Ctx *ctx, unsigned char tag, Py_ssize_t *ppos, int key) {
    const unsigned char *buf = ctx->buf;
    const Py_ssize_t end = ctx->end;
    Py_ssize_t pos = *ppos;
    int marked = tag == BIT_BINARY_EXT;
    NEED(marked ? 5 : 4);
    Py_ssize_t n = (Py_ssize_t)be32(buf + pos);
    pos += 4;
    if (marked) {
        int bits = buf[pos++];
        if (!((n == 0 && bits == 0) || (n > 0 && bits == 8))) return fall(ctx); /* real bitstrings */
    }
    NEED(n);
    const char *p = (const char *)buf + pos;
    *ppos = pos + n;
    int as_bytes = ctx->binmode == BIN_BYTES || (ctx->binmode == BIN_TAGGED && marked);
    if (as_bytes && ctx->view_base && n >= ctx->view_min)
        return view_slice(ctx->view_base, pos, pos + n);  /* a large binary: no copy */
    key = key && n <= KEY_CACHE_TEXT;
    if (as_bytes) return key ? cached_key(ctx->st, buf + pos, n, 1) : PyBytes_FromStringAndSize(p, n);
    PyObject *value = key ? cached_key(ctx->st, buf + pos, n, 0) : PyUnicode_DecodeUTF8(p, n, NULL);
    if (value) return value;
    PyErr_Clear();
    if (ctx->binmode == BIN_STR) return fall(ctx);
    return PyBytes_FromStringAndSize(p, n);  /* tagged mode: a BINARY_EXT that is not text */
}

static PyObject *read_string(Ctx *ctx, Py_ssize_t *ppos) {
    const unsigned char *buf = ctx->buf;
    const Py_ssize_t end = ctx->end;
    Py_ssize_t pos = *ppos, n;
    NEED(2);
    n = (buf[pos] << 8) | buf[pos + 1];
    pos += 2;
    NEED(n);
    if (count_terms(ctx, n) < 0) return NULL;  /* a charlist is a list of n integers, whatever it decodes to */
    *ppos = pos + n;
    if (ctx->chars == CHARS_STR) return PyUnicode_DecodeLatin1((const char *)buf + pos, n, NULL);
    if (ctx->chars == CHARS_LIST_WARN && n >= 2) {
        /* A charlist that looks like text: Python decodes it and warns. */
        int text = 1;
        for (Py_ssize_t i = 0; i < n && text; i++) text = buf[pos + i] >= 32 && buf[pos + i] < 127;
        if (text) return fall(ctx);
    }
    PyObject *value = PyList_New(n);
    if (value)
        for (Py_ssize_t i = 0; i < n; i++) PyList_SET_ITEM(value, i, PyLong_FromLong(buf[pos + i]));
    return value;
}

#undef NEED

/* ------------------------------------------------------------------ containers */

/* Open the tuple, list or map at *ppos on the stack (1), or make it at once
 * when it is empty (0, in *value); -1 with an error set. */
static int open_container(Ctx *ctx, unsigned char tag, Py_ssize_t *ppos, Py_ssize_t *depth, PyObject **value) {
    const unsigned char *buf = ctx->buf;
    const Py_ssize_t end = ctx->end;
    Py_ssize_t pos = *ppos, n;
    int kind;
    if (tag == SMALL_TUPLE_EXT) {
        if (end - pos < 1) goto fallback;
        n = buf[pos++];
        kind = K_TUPLE;
    } else {
        if (end - pos < 4) goto fallback;
        n = (Py_ssize_t)be32(buf + pos);
        pos += 4;
        kind = tag == LIST_EXT ? K_LIST : tag == MAP_EXT ? K_MAP : K_TUPLE;
    }
    Py_ssize_t terms = kind == K_MAP ? 2 * n : n;
    /* every term takes at least one byte: a declared count cannot outrun the input */
    if (terms > end - pos) goto fallback;
    *ppos = pos;
    if (terms == 0 && kind != K_LIST) {
        *value = kind == K_MAP ? PyDict_New() : PyTuple_New(0);
        return *value ? 0 : -1;
    }
    if (count_terms(ctx, terms ? terms : 1) < 0) return -1;  /* a list with no elements: its tail is its term */
    if (*depth >= ctx->max_depth) goto fallback;
    if (*depth == ctx->cap) {
        Py_ssize_t ncap = ctx->cap ? ctx->cap * 2 : 32;
        Frame *ns = PyMem_Realloc(ctx->stack, (size_t)ncap * sizeof(Frame));
        if (!ns) { PyErr_NoMemory(); return -1; }
        ctx->stack = ns;
        ctx->cap = ncap;
    }
    Frame *f = &ctx->stack[*depth];
    f->kind = (kind == K_LIST && n == 0) ? K_TAIL : kind;
    f->index = 0;
    f->remaining = terms;
    f->key = NULL;
    f->pairs = n;
    f->counts = (HashCounts){NULL, 0, 0};
    f->obj = kind == K_MAP ? PyDict_New() : kind == K_TUPLE ? PyTuple_New(n) : PyList_New(n);
    if (!f->obj) return -1;
    (*depth)++;
    return 1;
fallback:
    fall(ctx);
    return -1;
}

/* Store value (stolen) in the map of f: as its next key, or under the pending key. */
static int map_put(Ctx *ctx, Frame *f, PyObject *value) {
    if (!f->key) { f->key = value; return 0; }
    PyObject *key = safe_key(ctx->st, &f->counts, f->key);  /* steals the pending key */
    f->key = NULL;
    int rc = key ? PyDict_SetItem(f->obj, key, value) : -1;
    Py_XDECREF(key);
    Py_DECREF(value);
    return rc;
}

/* The finished map (stolen): checked for colliding keys, and mapped when it is a struct. */
static PyObject *close_map(Ctx *ctx, Frame *f) {
    PyObject *value = f->obj;
    if (PyDict_GET_SIZE(value) != f->pairs) { Py_DECREF(value); return fall(ctx); } /* colliding keys */
    if (!ctx->struct_hook) return value;
    PyObject *tag = PyDict_GetItemWithError(value, ctx->st->struct_key);
    if (!tag) {
        if (PyErr_Occurred()) { Py_DECREF(value); return NULL; }
        return value;
    }
    PyObject *mapped = PyObject_CallOneArg(ctx->struct_hook, value);
    Py_DECREF(value);
    if (!mapped) { PyErr_Clear(); return fall(ctx); } /* Python reports it with its path */
    return mapped;
}

/* Hand *value (stolen) to the innermost open container, closing those it
 * completes. 1 when the outermost term is done (in *value), 0 when the
 * open containers need more terms, -1 with an error set. */
static int hand_up(Ctx *ctx, PyObject **value, Py_ssize_t *ppos, Py_ssize_t *depth) {
    PyObject *v = *value;
    *value = NULL;
    for (;;) {
        if (*depth == 0) { *value = v; return 1; }
        Frame *f = &ctx->stack[*depth - 1];
        if (f->kind == K_LIST || f->kind == K_TUPLE) {
            if (f->kind == K_LIST) PyList_SET_ITEM(f->obj, f->index, v);
            else PyTuple_SET_ITEM(f->obj, f->index, v);
            f->index++;
            if (--f->remaining) return 0;
            if (f->kind == K_TUPLE) { v = f->obj; (*depth)--; continue; }
            if (*ppos < ctx->end && ctx->buf[*ppos] == NIL_EXT) { (*ppos)++; v = f->obj; (*depth)--; continue; }
            if (count_terms(ctx, 1) < 0) return -1;  /* a non-NIL tail follows the elements: one more term */
            f->kind = K_TAIL;
            return 0;
        }
        if (f->kind == K_MAP) {
            if (map_put(ctx, f, v) < 0) return -1;
            if (--f->remaining) return 0;
            (*depth)--;
            counts_free(&f->counts);
            if (!(v = close_map(ctx, f))) return -1;
            continue;
        }
        /* K_TAIL: v is the tail of a list whose elements are done */
        (*depth)--;
        PyObject *joined = PyObject_CallFunctionObjArgs(ctx->st->make_improper, f->obj, v, NULL);
        Py_DECREF(f->obj);
        Py_DECREF(v);
        if (!(v = joined)) return -1;
    }
}

PyObject *decode_value(Ctx *ctx, Py_ssize_t *ppos) {
    const unsigned char *buf = ctx->buf;
    Py_ssize_t pos = *ppos;
    Py_ssize_t depth = 0;
    PyObject *value = NULL;
    if (pos < 0 || pos > ctx->end) return fall(ctx);
    for (;;) {
        if (pos >= ctx->end) { fall(ctx); goto error; }
        unsigned char tag = buf[pos++];
        switch (tag) {  /* one dispatch per term: containers open, scalars are read whole */
        case SMALL_INTEGER_EXT:
            if (ctx->end - pos < 1) { fall(ctx); goto error; }
            value = PyLong_FromLong(buf[pos++]);
            break;
        case INTEGER_EXT:
            if (ctx->end - pos < 4) { fall(ctx); goto error; }
            value = PyLong_FromLong((long)(int32_t)be32(buf + pos));
            pos += 4;
            break;
        case NEW_FLOAT_EXT: value = read_float(ctx, &pos); break;
        case SMALL_ATOM_UTF8_EXT: case SMALL_ATOM_EXT: case ATOM_UTF8_EXT: case ATOM_EXT:
            value = read_atom(ctx, tag, &pos);
            break;
        case BINARY_EXT: case BIT_BINARY_EXT:  /* a map waiting for its next key is reading one */
            value = read_binary(ctx, tag, &pos, depth && ctx->stack[depth - 1].kind == K_MAP
                                                    && !ctx->stack[depth - 1].key
                                                    && ctx->stack[depth - 1].pairs <= KEY_CACHE_PAIRS);
            break;
        case NIL_EXT: value = PyList_New(0); break;
        case STRING_EXT: value = read_string(ctx, &pos); break;
        case SMALL_BIG_EXT: case LARGE_BIG_EXT: value = read_big(ctx, tag, &pos); break;
        case SMALL_TUPLE_EXT: case LARGE_TUPLE_EXT: case LIST_EXT: case MAP_EXT: {
            int rc = open_container(ctx, tag, &pos, &depth, &value);
            if (rc < 0) goto error;
            if (rc > 0) continue;
            break;
        }
        default:
            fall(ctx); /* rare or invalid tags: Python decodes them */
            goto error;
        }
        if (!value) goto error;
        int rc = hand_up(ctx, &value, &pos, &depth);
        if (rc < 0) goto error;
        if (rc > 0) break;
    }
    *ppos = pos;
    return value;
error:
    for (Py_ssize_t i = 0; i < depth; i++) {
        /* Unfilled list/tuple slots are NULL, which their deallocators accept. */
        Py_XDECREF(ctx->stack[i].obj);
        Py_XDECREF(ctx->stack[i].key);
        counts_free(&ctx->stack[i].counts);
    }
    return NULL;
}

/* ------------------------------------------------------------------ entry point */

void ctx_init(Ctx *c, State *st, const CodecOptions *o, Py_buffer *view, PyObject *view_base) {
    memset(c, 0, sizeof(*c));
    c->st = st;
    c->buf = view->buf;
    c->end = view->len;
    c->struct_hook = o->struct_hook;
    c->view_base = (view_base == NULL || view_base == Py_None || o->views <= 0) ? NULL : view_base;
    c->view_min = o->views;
    c->binmode = o->binmode;
    c->chars = o->chars;
    c->atoms_str = o->atoms_str;
    c->none_atom = o->none_atom;
    c->none_utf8 = o->none_utf8;
    c->none_len = o->none_len;
    c->max_depth = o->max_depth;
    c->max_atoms = o->max_atoms;
    c->max_terms = o->max_terms;
}

void ctx_free(Ctx *c) {
    PyMem_Free(c->stack);
    atoms_free(&c->atoms);
}

/* The term at *pos of view, decoded under o; NULL with Fallback (or another error) set. */
static PyObject *decode_in(State *st, const CodecOptions *o, Py_buffer *view, PyObject *view_base, Py_ssize_t *pos) {
    Ctx ctx;
    ctx_init(&ctx, st, o, view, view_base);
    /* Decoded terms cannot form cycles; pausing the cyclic GC while millions of
     * containers are built avoids collections that would triple the time. */
    int gc_was_enabled = PyGC_Disable();
    PyObject *value = count_terms(&ctx, 1) < 0 ? NULL : decode_value(&ctx, pos);  /* the value itself is a term */
    if (gc_was_enabled) PyGC_Enable();
    ctx_free(&ctx);
    return value;
}

/* decode(buf, pos, options, view_base=None) -> (value, end) */
PyObject *sp_decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = module_state(module);
    Py_buffer view;
    Py_ssize_t pos;
    CodecOptions *o;
    if (decoder_args(st, args, nargs, 3, 4, "decode", &view, &pos, &o) < 0) return NULL;
    PyObject *value = decode_in(st, o, &view, nargs > 3 ? args[3] : NULL, &pos);
    PyObject *result = value ? Py_BuildValue("(Nn)", value, pos) : NULL;
    PyBuffer_Release(&view);
    return result;
}

/* decode_whole(buf, options, view_base=None) -> value: buf is exactly one uncompressed
 * term_to_binary result. Anything else -- not bytes, another first byte, a compressed
 * term or a distribution header, bytes after the term -- raises Fallback, and
 * tether._etf.decode checks it step by step and names what is wrong. */
PyObject *sp_decode_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = module_state(module);
    if (nargs < 2 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "decode_whole() takes 2 to 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!st->atom_type) {
        PyErr_SetString(PyExc_RuntimeError, "tether._speedups: configure() was not called");
        return NULL;
    }
    CodecOptions *o = codec_options(st, args[1]);
    if (!o) return NULL;
    Py_buffer view;
    /* With its format, so that only a flat buffer of bytes takes this path (a view of
     * doubles is cast to bytes by the Python path, which also slices views of it). */
    if (PyObject_GetBuffer(args[0], &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        set_fallback(st);
        return NULL;
    }
    const unsigned char *buf = view.buf;
    PyObject *value = NULL;
    Py_ssize_t pos = 1;
    int flat = view.ndim <= 1 && view.itemsize == 1 && (!view.format || strcmp(view.format, "B") == 0);
    if (flat && view.len >= 2 && buf[0] == VERSION_MAGIC && buf[1] != COMPRESSED) {
        /* A distribution header's tag is none the decoder reads: it falls back like any rare tag. */
        value = decode_in(st, o, &view, nargs > 2 ? args[2] : NULL, &pos);
        if (!value) { PyBuffer_Release(&view); return NULL; }  /* Fallback, or an error as decode() raises it */
        if (pos != view.len) Py_CLEAR(value);
    }
    PyBuffer_Release(&view);
    if (!value) set_fallback(st);
    return value;
}
