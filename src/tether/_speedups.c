/* tether's native speedups: the ETF decoder's fast path, and a bulk copy.
 *
 * Fast path of tether's ETF decoder.
 *
 * Decodes the tags that make up bulk data (integers, floats, atoms, binaries,
 * tuples, lists, maps, big integers) iteratively, with every declared length
 * checked against the bytes present before anything is allocated.
 *
 * Anything else -- a rare tag, malformed input, an exceeded limit -- raises
 * Fallback, and tether/_etf.py decodes the term again in Python, which owns
 * the precise typed error (with the path at fault) and the rare tags. The two
 * decoders are tested against each other, so they return identical values.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static PyObject *Fallback;
static PyObject *AtomType;       /* tether.Atom */
static PyObject *MakeImproper;   /* (items, tail) -> value */
static PyObject *Freeze;         /* key -> hashable key */
static PyObject *StructKey;      /* "__struct__" */

enum { K_LIST, K_TAIL, K_TUPLE, K_MAP };
enum { BIN_BYTES, BIN_STR, BIN_TAGGED };

typedef struct {
    int kind;
    PyObject *obj;          /* list, tuple or dict being filled (owned) */
    Py_ssize_t index;       /* next slot for list/tuple */
    Py_ssize_t remaining;   /* terms still expected */
    PyObject *key;          /* pending map key (owned) or NULL */
    Py_ssize_t pairs;       /* declared pairs, for the duplicate check */
} Frame;

typedef struct {
    const unsigned char *p; /* atom text inside the input buffer */
    Py_ssize_t n;
    int latin;
    PyObject *value;        /* owned */
} AtomSlot;

typedef struct {
    AtomSlot *slots;
    Py_ssize_t cap;         /* power of two */
    Py_ssize_t used;
} AtomCache;

static void atoms_free(AtomCache *c) {
    for (Py_ssize_t i = 0; i < c->cap; i++) Py_XDECREF(c->slots[i].value);
    PyMem_Free(c->slots);
}

static uint64_t hash_bytes(const unsigned char *p, Py_ssize_t n, int latin) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)latin;
    for (Py_ssize_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h;
}

static int atoms_grow(AtomCache *c) {
    Py_ssize_t ncap = c->cap ? c->cap * 2 : 64;
    AtomSlot *ns = PyMem_Calloc((size_t)ncap, sizeof(AtomSlot));
    if (!ns) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < c->cap; i++) {
        AtomSlot *s = &c->slots[i];
        if (!s->value) continue;
        uint64_t h = hash_bytes(s->p, s->n, s->latin);
        Py_ssize_t j = (Py_ssize_t)(h & (uint64_t)(ncap - 1));
        while (ns[j].value) j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    PyMem_Free(c->slots);
    c->slots = ns;
    c->cap = ncap;
    return 0;
}

typedef struct {
    int atoms_as_str;
    PyObject *none_atom;    /* str or NULL */
    const char *none_utf8;  /* its UTF-8 text, or NULL: compare decoded names instead */
    Py_ssize_t none_len;
    Py_ssize_t max_atoms;
} AtomOpts;

/* Atom text (UTF-8 bytes) -> tether.Atom, shared by all calls. A small call
 * names a handful of atoms, and building each Atom object costs more than
 * decoding the rest of the term; atoms are immutable, so one object per name
 * serves every call. Bounded: cleared when it reaches ATOM_INTERN_MAX names. */
static PyObject *AtomIntern;
#define ATOM_INTERN_MAX 65536

/* New reference to the shared Atom named by the UTF-8 text p[0:n], or NULL
 * with Fallback/another error set. */
static PyObject *interned_atom(const unsigned char *p, Py_ssize_t n) {
    PyObject *key = PyBytes_FromStringAndSize((const char *)p, n);
    if (!key) return NULL;
    PyObject *value = PyDict_GetItemWithError(AtomIntern, key);
    if (value) { Py_INCREF(value); Py_DECREF(key); return value; }
    if (PyErr_Occurred()) { Py_DECREF(key); return NULL; }
    PyObject *name = PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (!name) { Py_DECREF(key); PyErr_Clear(); PyErr_SetString(Fallback, "atom text"); return NULL; }
    if (PyUnicode_GET_LENGTH(name) > 255) {
        Py_DECREF(key); Py_DECREF(name); PyErr_SetString(Fallback, "atom length"); return NULL;
    }
    value = PyObject_CallOneArg(AtomType, name);
    Py_DECREF(name);
    if (value) {
        if (PyDict_GET_SIZE(AtomIntern) >= ATOM_INTERN_MAX) PyDict_Clear(AtomIntern);
        if (PyDict_SetItem(AtomIntern, key, value) < 0) Py_CLEAR(value);
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

/* New reference to the value of the atom p[0:n], or NULL with Fallback/another error set. */
static PyObject *atom_value(AtomCache *c, const unsigned char *p, Py_ssize_t n, int latin, const AtomOpts *o) {
    if (c->used * 2 >= c->cap && atoms_grow(c) < 0) return NULL;
    uint64_t h = hash_bytes(p, n, latin);
    Py_ssize_t j = (Py_ssize_t)(h & (uint64_t)(c->cap - 1));
    while (c->slots[j].value) {
        AtomSlot *s = &c->slots[j];
        if (s->n == n && s->latin == latin && memcmp(s->p, p, (size_t)n) == 0) {
            Py_INCREF(s->value);
            return s->value;
        }
        j = (j + 1) & (c->cap - 1);
    }
    if (c->used >= o->max_atoms) { PyErr_SetString(Fallback, "atoms"); return NULL; }
    int ascii = 1;
    for (Py_ssize_t i = 0; i < n && ascii; i++) ascii = p[i] < 0x80;
    /* Latin-1 and UTF-8 spell ASCII alike; other Latin-1 atoms take the general path. */
    if (!o->atoms_as_str && (ascii || !latin) && (o->none_utf8 || !o->none_atom)) {
        PyObject *value;
        if (n == 4 && memcmp(p, "true", 4) == 0) value = Py_NewRef(Py_True);
        else if (n == 5 && memcmp(p, "false", 5) == 0) value = Py_NewRef(Py_False);
        else if (o->none_utf8 && n == o->none_len && memcmp(p, o->none_utf8, (size_t)n) == 0) value = Py_NewRef(Py_None);
        else if (!(value = interned_atom(p, n))) return NULL;
        return atom_store(c, j, p, n, latin, value);
    }
    PyObject *name = latin ? PyUnicode_DecodeLatin1((const char *)p, n, NULL)
                           : PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (!name) { PyErr_Clear(); PyErr_SetString(Fallback, "atom text"); return NULL; }
    if (PyUnicode_GET_LENGTH(name) > 255) { Py_DECREF(name); PyErr_SetString(Fallback, "atom length"); return NULL; }
    PyObject *value;
    if (PyUnicode_CompareWithASCIIString(name, "true") == 0) { value = Py_True; Py_INCREF(value); }
    else if (PyUnicode_CompareWithASCIIString(name, "false") == 0) { value = Py_False; Py_INCREF(value); }
    else if (o->none_atom && PyUnicode_Compare(name, o->none_atom) == 0) { value = Py_None; Py_INCREF(value); }
    else if (o->atoms_as_str) { value = name; Py_INCREF(value); }
    else {
        value = PyObject_CallOneArg(AtomType, name);
        if (!value) { Py_DECREF(name); return NULL; }
    }
    Py_DECREF(name);
    return atom_store(c, j, p, n, latin, value);
}

/* Make sure the pending error is Fallback: the Python decoder redoes the term. */
static void set_fallback(void) {
    if (!PyErr_Occurred() || !PyErr_ExceptionMatches(Fallback)) {
        PyErr_Clear();
        PyErr_SetString(Fallback, "fallback");
    }
}

#define NEED(k) do { if ((Py_ssize_t)(k) > end - pos) goto fallback; } while (0)

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

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

typedef struct {
    const unsigned char *buf;
    Py_ssize_t end;
    PyObject *struct_hook;   /* borrowed; NULL when structs stay dicts */
    PyObject *view_base;     /* borrowed memoryview of the input, or NULL */
    Py_ssize_t view_min;     /* binaries this large become views of view_base */
    int binmode, chars_str;
    Py_ssize_t max_depth;
    AtomOpts aopts;
    AtomCache atoms;
    Frame *stack;
    Py_ssize_t cap;
} Ctx;

static void ctx_free(Ctx *c) {
    PyMem_Free(c->stack);
    atoms_free(&c->atoms);
}

/* Decode the term at *ppos; on success set *ppos past it. NULL with Fallback (or another error) set. */
static PyObject *decode_value(Ctx *ctx, Py_ssize_t *ppos) {
    const unsigned char *buf = ctx->buf;
    const Py_ssize_t end = ctx->end;
    const int binmode = ctx->binmode, chars_str = ctx->chars_str;
    const Py_ssize_t max_depth = ctx->max_depth;
    AtomCache *atomsp = &ctx->atoms;
    const AtomOpts *aopts = &ctx->aopts;
    Py_ssize_t pos = *ppos;
    Py_ssize_t depth = 0;
    PyObject *value = NULL;

    if (pos < 0 || pos > end) goto fallback;
    for (;;) {
        NEED(1);
        unsigned char tag = buf[pos++];
        Py_ssize_t n;
        switch (tag) {
        case 97: /* SMALL_INTEGER */
            NEED(1);
            value = PyLong_FromLong(buf[pos]);
            pos += 1;
            break;
        case 98: /* INTEGER */
            NEED(4);
            value = PyLong_FromLong((long)(int32_t)be32(buf + pos));
            pos += 4;
            break;
        case 70: { /* NEW_FLOAT */
            NEED(8);
            uint64_t bits = ((uint64_t)be32(buf + pos) << 32) | be32(buf + pos + 4);
            double d;
            memcpy(&d, &bits, 8);
            if (!isfinite(d)) goto fallback;
            value = PyFloat_FromDouble(d);
            pos += 8;
            break;
        }
        case 119: case 115: /* SMALL_ATOM_UTF8, SMALL_ATOM */
            NEED(1);
            n = buf[pos];
            pos += 1;
            NEED(n);
            value = atom_value(atomsp, buf + pos, n, tag == 115, aopts);
            pos += n;
            break;
        case 118: case 100: /* ATOM_UTF8, ATOM */
            NEED(2);
            n = (buf[pos] << 8) | buf[pos + 1];
            pos += 2;
            NEED(n);
            value = atom_value(atomsp, buf + pos, n, tag == 100, aopts);
            pos += n;
            break;
        case 109: case 77: { /* BINARY, BIT_BINARY */
            int marked = tag == 77;
            NEED(marked ? 5 : 4);
            n = (Py_ssize_t)be32(buf + pos);
            pos += 4;
            if (marked) {
                int bits = buf[pos++];
                if (!((n == 0 && bits == 0) || (n > 0 && bits == 8))) goto fallback; /* real bitstrings */
            }
            NEED(n);
            const char *p = (const char *)buf + pos;
            pos += n;
            if (ctx->view_base && n >= ctx->view_min && (binmode == BIN_BYTES || (binmode == BIN_TAGGED && marked))) {
                /* A large binary: a read-only view of the input, no copy. */
                PyObject *lo = PyLong_FromSsize_t(pos - n), *hi = PyLong_FromSsize_t(pos);
                PyObject *slice = (lo && hi) ? PySlice_New(lo, hi, NULL) : NULL;
                Py_XDECREF(lo);
                Py_XDECREF(hi);
                value = slice ? PyObject_GetItem(ctx->view_base, slice) : NULL;
                Py_XDECREF(slice);
            } else if (binmode == BIN_BYTES || (binmode == BIN_TAGGED && marked)) {
                value = PyBytes_FromStringAndSize(p, n);
            } else if (binmode == BIN_STR) {
                value = PyUnicode_DecodeUTF8(p, n, NULL);
                if (!value) { PyErr_Clear(); goto fallback; }
            } else {
                value = PyUnicode_DecodeUTF8(p, n, NULL);
                if (!value) { PyErr_Clear(); value = PyBytes_FromStringAndSize(p, n); }
            }
            break;
        }
        case 106: /* NIL */
            value = PyList_New(0);
            break;
        case 107: /* STRING */
            NEED(2);
            n = (buf[pos] << 8) | buf[pos + 1];
            pos += 2;
            NEED(n);
            if (chars_str == 1) {
                value = PyUnicode_DecodeLatin1((const char *)buf + pos, n, NULL);
            } else {
                /* A charlist that looks like text: Python decodes it and warns (mode 0). */
                if (chars_str == 0 && n >= 2) {
                    int text = 1;
                    for (Py_ssize_t i = 0; i < n && text; i++) text = buf[pos + i] >= 32 && buf[pos + i] < 127;
                    if (text) goto fallback;
                }
                value = PyList_New(n);
                if (value)
                    for (Py_ssize_t i = 0; i < n; i++) PyList_SET_ITEM(value, i, PyLong_FromLong(buf[pos + i]));
            }
            pos += n;
            break;
        case 110: case 111: { /* SMALL_BIG, LARGE_BIG */
            if (tag == 110) { NEED(2); n = buf[pos]; pos += 1; }
            else { NEED(5); n = (Py_ssize_t)be32(buf + pos); pos += 4; }
            int sign = buf[pos++];
            if (sign > 1) goto fallback;
            NEED(n);
            if (n > 4096) goto fallback; /* huge ints: Python path (quadratic int conversion) */
            value = big_int(buf + pos, n, sign);
            pos += n;
            break;
        }
        case 104: case 105: case 108: case 116: { /* tuples, LIST, MAP */
            int kind;
            if (tag == 104) { NEED(1); n = buf[pos]; pos += 1; kind = K_TUPLE; }
            else { NEED(4); n = (Py_ssize_t)be32(buf + pos); pos += 4; kind = tag == 108 ? K_LIST : tag == 116 ? K_MAP : K_TUPLE; }
            Py_ssize_t terms = kind == K_MAP ? 2 * n : n;
            /* every term takes at least one byte: a declared count cannot outrun the input */
            if (terms > end - pos) goto fallback;
            if (terms == 0 && kind != K_LIST) {
                value = kind == K_MAP ? PyDict_New() : PyTuple_New(0);
                break;
            }
            if (depth >= max_depth) goto fallback;
            if (depth == ctx->cap) {
                Py_ssize_t ncap = ctx->cap ? ctx->cap * 2 : 32;
                Frame *ns = PyMem_Realloc(ctx->stack, (size_t)ncap * sizeof(Frame));
                if (!ns) { PyErr_NoMemory(); goto error; }
                ctx->stack = ns;
                ctx->cap = ncap;
            }
            Frame *f = &ctx->stack[depth];
            f->kind = (kind == K_LIST && n == 0) ? K_TAIL : kind;
            f->index = 0;
            f->remaining = terms;
            f->key = NULL;
            f->pairs = n;
            f->obj = kind == K_MAP ? PyDict_New() : kind == K_TUPLE ? PyTuple_New(n) : PyList_New(n);
            if (!f->obj) goto error;
            depth++;
            continue;
        }
        default:
            goto fallback; /* rare or invalid tags: Python decodes them */
        }
        if (!value) {
            if (PyErr_ExceptionMatches(Fallback)) goto fallback;
            goto error;
        }

        /* Hand the value to the innermost container; close those it completes. */
        for (;;) {
            if (depth == 0) goto done;
            Frame *f = &ctx->stack[depth - 1];
            if (f->kind == K_LIST || f->kind == K_TUPLE) {
                if (f->kind == K_LIST) PyList_SET_ITEM(f->obj, f->index, value);
                else PyTuple_SET_ITEM(f->obj, f->index, value);
                value = NULL;
                f->index++;
                if (--f->remaining) break;
                if (f->kind == K_TUPLE) { value = f->obj; depth--; continue; }
                if (pos < end && buf[pos] == 106) { pos++; value = f->obj; depth--; continue; }
                f->kind = K_TAIL;
                break;
            }
            if (f->kind == K_MAP) {
                if (!f->key) { f->key = value; value = NULL; }
                else {
                    int rc = PyDict_SetItem(f->obj, f->key, value);
                    if (rc < 0 && PyErr_ExceptionMatches(PyExc_TypeError)) {
                        PyErr_Clear();
                        PyObject *frozen = PyObject_CallOneArg(Freeze, f->key);
                        if (!frozen) { Py_DECREF(value); value = NULL; goto error; }
                        rc = PyDict_SetItem(f->obj, frozen, value);
                        Py_DECREF(frozen);
                    }
                    Py_CLEAR(f->key);
                    Py_DECREF(value);
                    value = NULL;
                    if (rc < 0) goto error;
                }
                if (--f->remaining) break;
                if (PyDict_GET_SIZE(f->obj) != f->pairs) goto fallback; /* colliding keys */
                value = f->obj;
                depth--;
                if (ctx->struct_hook) {
                    PyObject *tag = PyDict_GetItemWithError(value, StructKey);
                    if (tag) {
                        PyObject *mapped = PyObject_CallOneArg(ctx->struct_hook, value);
                        Py_DECREF(value);
                        value = mapped;
                        if (!value) { PyErr_Clear(); goto fallback; } /* Python reports it with its path */
                    } else if (PyErr_Occurred()) {
                        goto error;
                    }
                }
                continue;
            }
            /* K_TAIL: value is the tail of a list whose elements are done */
            {
                PyObject *items = f->obj;
                depth--;
                PyObject *joined = PyObject_CallFunctionObjArgs(MakeImproper, items, value, NULL);
                Py_DECREF(items);
                Py_DECREF(value);
                value = joined;
                if (!value) {
                    if (PyErr_ExceptionMatches(Fallback)) goto fallback;
                    goto error;
                }
                continue;
            }
        }
    }

done:
    *ppos = pos;
    return value;
fallback:
    set_fallback();
error:
    Py_XDECREF(value);
    for (Py_ssize_t i = 0; i < depth; i++) {
        /* Unfilled list/tuple slots are NULL, which their deallocators accept. */
        Py_XDECREF(ctx->stack[i].obj);
        Py_XDECREF(ctx->stack[i].key);
    }
    return NULL;
}

static int ctx_init(Ctx *c, Py_buffer *view, int binmode, int chars_str, int atoms_str, PyObject *none_atom,
                    Py_ssize_t max_depth, Py_ssize_t max_atoms, PyObject *struct_hook,
                    PyObject *view_base, Py_ssize_t view_min) {
    memset(c, 0, sizeof(*c));
    c->struct_hook = struct_hook == Py_None ? NULL : struct_hook;
    c->view_base = (view_base == Py_None || view_min <= 0) ? NULL : view_base;
    c->view_min = view_min;
    c->buf = view->buf;
    c->end = view->len;
    c->binmode = binmode;
    c->chars_str = chars_str;
    c->max_depth = max_depth;
    c->aopts.atoms_as_str = atoms_str;
    c->aopts.none_atom = none_atom == Py_None ? NULL : none_atom;
    if (c->aopts.none_atom) {
        c->aopts.none_utf8 = PyUnicode_Check(none_atom) ? PyUnicode_AsUTF8AndSize(none_atom, &c->aopts.none_len) : NULL;
        if (!c->aopts.none_utf8) PyErr_Clear();
    }
    c->aopts.max_atoms = max_atoms;
    return 0;
}

/* decode(buf, pos, binaries, charlists_str, atoms_str, none_atom, max_depth, max_atoms) -> (value, end) */
static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, max_depth, max_atoms;
    int binmode, chars_str, atoms_str;
    PyObject *none_atom, *struct_hook = Py_None, *view_base = Py_None;
    Py_ssize_t view_min = 0;
    if (!PyArg_ParseTuple(args, "y*niiiOnn|OOn", &view, &pos, &binmode, &chars_str, &atoms_str,
                          &none_atom, &max_depth, &max_atoms, &struct_hook, &view_base, &view_min))
        return NULL;
    Ctx ctx;
    ctx_init(&ctx, &view, binmode, chars_str, atoms_str, none_atom, max_depth, max_atoms, struct_hook,
             view_base, view_min);
    /* Decoded terms cannot form cycles; pausing the cyclic GC while millions of
     * containers are built avoids collections that would triple the time. */
    int gc_was_enabled = PyGC_Disable();
    PyObject *value = decode_value(&ctx, &pos);
    if (gc_was_enabled) PyGC_Enable();
    PyObject *result = value ? Py_BuildValue("(Nn)", value, pos) : NULL;
    ctx_free(&ctx);
    PyBuffer_Release(&view);
    return result;
}

/* The row list both columnar decoders read: the number of rows at *pos (0
 * for []), with *pos moved past the list header; -1 when it is not a list. */
static Py_ssize_t rows_header(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *pos) {
    if (*pos >= end) return -1;
    if (buf[*pos] == 106) { (*pos)++; return 0; }
    if (buf[*pos] != 108 || end - *pos < 5) return -1;
    Py_ssize_t rows = (Py_ssize_t)be32(buf + *pos + 1);
    *pos += 5;
    return rows > end - *pos ? -1 : rows;
}

/* The pairs of the map at *pos, moved past its header; -1 when it is not a map. */
static Py_ssize_t map_header(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *pos) {
    if (end - *pos < 5 || buf[*pos] != 116) return -1;
    Py_ssize_t pairs = (Py_ssize_t)be32(buf + *pos + 1);
    *pos += 5;
    return 2 * pairs > end - *pos ? -1 : pairs;
}

/* decode_columns(buf, pos, binaries, charlists_str, atoms_str, none_atom, max_depth, max_atoms)
 *   -> (keys, columns, rows, end)
 * The term at pos must be a list of maps (or []): every map's values are
 * appended to one list per key, so no Python dict is built per row. Keys
 * missing from a row, or first seen after it, get None there. */
static PyObject *decode_columns(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, max_depth, max_atoms;
    int binmode, chars_str, atoms_str;
    PyObject *none_atom, *struct_hook = Py_None, *view_base = Py_None;
    Py_ssize_t view_min = 0;
    if (!PyArg_ParseTuple(args, "y*niiiOnn|OOn", &view, &pos, &binmode, &chars_str, &atoms_str,
                          &none_atom, &max_depth, &max_atoms, &struct_hook, &view_base, &view_min))
        return NULL;
    Ctx ctx;
    ctx_init(&ctx, &view, binmode, chars_str, atoms_str, none_atom, max_depth, max_atoms, struct_hook,
             view_base, view_min);
    const unsigned char *buf = view.buf;
    const Py_ssize_t end = view.len;
    PyObject *index = PyDict_New();   /* key -> column number */
    PyObject *keys = PyList_New(0);
    PyObject *columns = PyList_New(0);
    PyObject *result = NULL, *key = NULL, *value = NULL;
    Py_ssize_t rows = 0, nrows = 0;
    int gc_was_enabled = PyGC_Disable(); /* see decode() */
    if (!index || !keys || !columns) goto error;
    int empty = pos < end && buf[pos] == 106;
    if ((rows = rows_header(buf, end, &pos)) < 0) goto fallback;
    if (empty) goto finish;
    for (nrows = 0; nrows < rows; nrows++) {
        Py_ssize_t pairs = map_header(buf, end, &pos);
        if (pairs < 0) goto fallback;
        for (Py_ssize_t i = 0; i < pairs; i++) {
            key = decode_value(&ctx, &pos);
            if (!key) goto error;
            value = decode_value(&ctx, &pos);
            if (!value) goto error;
            PyObject *col_no = PyDict_GetItemWithError(index, key);
            PyObject *col;
            if (col_no) {
                col = PyList_GET_ITEM(columns, PyLong_AsSsize_t(col_no));
                if (PyList_GET_SIZE(col) != nrows) goto fallback; /* duplicate key in a row */
            } else {
                if (PyErr_Occurred()) { PyErr_Clear(); goto fallback; } /* unhashable key */
                col = PyList_New(nrows);
                if (!col) goto error;
                for (Py_ssize_t r = 0; r < nrows; r++) PyList_SET_ITEM(col, r, Py_NewRef(Py_None));
                PyObject *no = PyLong_FromSsize_t(PyList_GET_SIZE(columns));
                int rc = no ? PyDict_SetItem(index, key, no) : -1;
                Py_XDECREF(no);
                if (rc < 0 || PyList_Append(columns, col) < 0 || PyList_Append(keys, key) < 0) { Py_DECREF(col); goto error; }
                Py_DECREF(col);
            }
            if (PyList_Append(col, value) < 0) goto error;
            Py_CLEAR(key);
            Py_CLEAR(value);
        }
        /* pad the columns this row did not mention */
        for (Py_ssize_t c = 0; c < PyList_GET_SIZE(columns); c++) {
            PyObject *col = PyList_GET_ITEM(columns, c);
            if (PyList_GET_SIZE(col) == nrows && PyList_Append(col, Py_None) < 0) goto error;
        }
    }
    if (pos >= end || buf[pos] != 106) goto fallback; /* improper list of rows */
    pos++;
finish:
    result = Py_BuildValue("(OOnn)", keys, columns, nrows, pos);
    goto cleanup;
fallback:
    set_fallback();
error:
    result = NULL;
cleanup:
    if (gc_was_enabled) PyGC_Enable();
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(index);
    Py_XDECREF(keys);
    Py_XDECREF(columns);
    ctx_free(&ctx);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------ typed columns
 * decode_typed(buf, pos, none_atom, max_depth, max_atoms) -> (keys, specs, rows, end)
 *
 * A list of maps straight into Arrow-layout buffers: int64, float64, bit-packed
 * bool, binary (int32 offsets), atoms as dictionary codes, and lists and tuples
 * of those, with validity bitmaps. No Python object is made per value. It
 * covers the clean cases of the inference table in tether/arrow.py and gives
 * the same arrays; anything else (mixed kinds, maps, charlists, big integers,
 * bitstrings...) raises Fallback and the general column path decides, with
 * its warnings and errors. */

enum { T_UNSET, T_I64, T_F64, T_BOOL, T_ATOM, T_BIN, T_LIST, T_TUPLE };
/* Columns nest lists and tuples by C recursion: deeper ones go to the general path. */
#define TYPED_MAX_DEPTH 64
#define TYPED_MAX_ARITY 256

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Out;

static int out_reserve(Out *o, Py_ssize_t n) {
    if (o->len + n <= o->cap) return 0;
    Py_ssize_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + n) cap *= 2;
    char *np = PyMem_Realloc(o->p, (size_t)cap);
    if (!np) { PyErr_NoMemory(); return -1; }
    o->p = np;
    o->cap = cap;
    return 0;
}

static inline int out_put(Out *o, const void *src, Py_ssize_t n) {
    if (out_reserve(o, n) < 0) return -1;
    memcpy(o->p + o->len, src, (size_t)n);
    o->len += n;
    return 0;
}

static int tbuf_zeros(Out *b, Py_ssize_t n) {
    if (out_reserve(b, n) < 0) return -1;
    memset(b->p + b->len, 0, (size_t)n);
    b->len += n;
    return 0;
}

/* Set bit i of a bitmap held in b (grown, new bytes zeroed, as needed). */
static int tbits_set(Out *b, Py_ssize_t i, int on) {
    Py_ssize_t need = i / 8 + 1;
    if (need > b->len && tbuf_zeros(b, need - b->len) < 0) return -1;
    if (on) b->p[i / 8] |= (char)(1 << (i % 8));
    return 0;
}

typedef struct TCol {
    int kind;
    Py_ssize_t n, nulls;
    int has_valid;          /* validity bitmap started (at the first null) */
    Out valid, data, offs;
    struct TCol *child;     /* T_LIST */
    struct TCol *fields;    /* T_TUPLE */
    Py_ssize_t arity;
    PyObject *codes;        /* T_ATOM: atom -> code (dict) */
    PyObject *cats;         /* T_ATOM: categories in first-seen order (list) */
} TCol;

static void tcol_free(TCol *c) {
    PyMem_Free(c->valid.p);
    PyMem_Free(c->data.p);
    PyMem_Free(c->offs.p);
    if (c->child) { tcol_free(c->child); PyMem_Free(c->child); }
    if (c->fields) {
        for (Py_ssize_t i = 0; i < c->arity; i++) tcol_free(&c->fields[i]);
        PyMem_Free(c->fields);
    }
    Py_XDECREF(c->codes);
    Py_XDECREF(c->cats);
}

static int tcol_null(TCol *c);

/* Give an unset column its kind; the nulls it holds so far get their slots. */
static int tcol_start(TCol *c, int kind, Py_ssize_t arity) {
    Py_ssize_t n = c->n;
    c->kind = kind;
    switch (kind) {
    case T_I64: case T_F64: if (tbuf_zeros(&c->data, 8 * n) < 0) return -1; break;
    case T_BOOL: if (n && tbits_set(&c->data, n - 1, 0) < 0) return -1; break;
    case T_ATOM:
        if (tbuf_zeros(&c->data, 4 * n) < 0) return -1;
        if (!(c->codes = PyDict_New()) || !(c->cats = PyList_New(0))) return -1;
        break;
    case T_BIN: case T_LIST:
        if (tbuf_zeros(&c->offs, 4 * (n + 1)) < 0) return -1;
        if (kind == T_LIST && !(c->child = PyMem_Calloc(1, sizeof(TCol)))) { PyErr_NoMemory(); return -1; }
        break;
    case T_TUPLE:
        c->arity = arity;
        if (!(c->fields = PyMem_Calloc((size_t)arity, sizeof(TCol)))) { PyErr_NoMemory(); return -1; }
        for (Py_ssize_t i = 0; i < arity; i++)
            for (Py_ssize_t r = 0; r < n; r++)
                if (tcol_null(&c->fields[i]) < 0) return -1;
        break;
    }
    return 0;
}

static int tcol_valid(TCol *c, int on) {
    if (!on && !c->has_valid) {
        /* the first null: every slot so far was valid */
        c->has_valid = 1;
        for (Py_ssize_t i = 0; i < c->n; i++)
            if (tbits_set(&c->valid, i, 1) < 0) return -1;
    }
    if (!c->has_valid) return 0;
    return tbits_set(&c->valid, c->n, on);
}

static int tcol_offset(TCol *c, int32_t v) { return out_put(&c->offs, &v, 4); }

static int32_t tcol_last_offset(TCol *c) {
    int32_t v;
    memcpy(&v, c->offs.p + c->offs.len - 4, 4);
    return v;
}

static int tcol_null(TCol *c) {
    if (tcol_valid(c, 0) < 0) return -1;
    switch (c->kind) {
    case T_I64: case T_F64: if (tbuf_zeros(&c->data, 8) < 0) return -1; break;
    case T_BOOL: if (tbits_set(&c->data, c->n, 0) < 0) return -1; break;
    case T_ATOM: if (tbuf_zeros(&c->data, 4) < 0) return -1; break;
    case T_BIN: case T_LIST: if (tcol_offset(c, tcol_last_offset(c)) < 0) return -1; break;
    case T_TUPLE:
        for (Py_ssize_t i = 0; i < c->arity; i++)
            if (tcol_null(&c->fields[i]) < 0) return -1;
        break;
    }
    c->n++;
    c->nulls++;
    return 0;
}

#define TFALL do { PyErr_SetString(Fallback, "typed"); return -1; } while (0)
#define TNEED(k) do { if ((Py_ssize_t)(k) > end - pos) TFALL; } while (0)

/* Append the term at *ppos to c. -1 with Fallback when the column is not a clean typed one. */
static int tcol_append(Ctx *ctx, TCol *c, Py_ssize_t *ppos, Py_ssize_t depth) {
    const unsigned char *buf = ctx->buf;
    const Py_ssize_t end = ctx->end;
    Py_ssize_t pos = *ppos;
    Py_ssize_t n;
    if (depth > ctx->max_depth || depth > TYPED_MAX_DEPTH) TFALL;  /* deep nesting: the general path */
    TNEED(1);
    unsigned char tag = buf[pos++];
    switch (tag) {
    case 97: case 98: case 110: { /* integers that fit int64 */
        int64_t v;
        if (tag == 97) { TNEED(1); v = buf[pos]; pos += 1; }
        else if (tag == 98) { TNEED(4); v = (int32_t)be32(buf + pos); pos += 4; }
        else {
            TNEED(2);
            n = buf[pos];
            int sign = buf[pos + 1];
            pos += 2;
            TNEED(n);
            if (n > 8 || sign > 1) TFALL;
            uint64_t u = 0;
            for (Py_ssize_t i = n - 1; i >= 0; i--) u = (u << 8) | buf[pos + i];
            pos += n;
            if (!sign && u > (uint64_t)INT64_MAX) TFALL;  /* uint64 or wider: the general path */
            if (sign && u > (uint64_t)INT64_MAX + 1) TFALL;
            v = sign ? (int64_t)(0 - u) : (int64_t)u;
        }
        if (c->kind == T_UNSET && tcol_start(c, T_I64, 0) < 0) return -1;
        if (c->kind != T_I64) TFALL;
        if (tcol_valid(c, 1) < 0 || out_put(&c->data, &v, 8) < 0) return -1;
        break;
    }
    case 70: { /* NEW_FLOAT */
        TNEED(8);
        uint64_t bits = ((uint64_t)be32(buf + pos) << 32) | be32(buf + pos + 4);
        double d;
        memcpy(&d, &bits, 8);
        pos += 8;
        if (!isfinite(d)) TFALL;
        if (c->kind == T_UNSET && tcol_start(c, T_F64, 0) < 0) return -1;
        if (c->kind != T_F64) TFALL;
        if (tcol_valid(c, 1) < 0 || out_put(&c->data, &d, 8) < 0) return -1;
        break;
    }
    case 119: case 115: case 118: case 100: { /* atoms: true/false, nil, or dictionary codes */
        if (tag == 119 || tag == 115) { TNEED(1); n = buf[pos]; pos += 1; }
        else { TNEED(2); n = (buf[pos] << 8) | buf[pos + 1]; pos += 2; }
        TNEED(n);
        PyObject *atom = atom_value(&ctx->atoms, buf + pos, n, tag == 115 || tag == 100, &ctx->aopts);
        pos += n;
        if (!atom) return -1;
        if (atom == Py_None) {
            Py_DECREF(atom);
            if (tcol_null(c) < 0) return -1;  /* counts the slot itself */
            *ppos = pos;
            return 0;
        }
        if (atom == Py_True || atom == Py_False) {
            int on = atom == Py_True;
            Py_DECREF(atom);
            if (c->kind == T_UNSET && tcol_start(c, T_BOOL, 0) < 0) return -1;
            if (c->kind != T_BOOL) TFALL;
            if (tcol_valid(c, 1) < 0 || tbits_set(&c->data, c->n, on) < 0) return -1;
            break;
        }
        if (c->kind == T_UNSET && tcol_start(c, T_ATOM, 0) < 0) { Py_DECREF(atom); return -1; }
        if (c->kind != T_ATOM) { Py_DECREF(atom); TFALL; }
        PyObject *code = PyDict_GetItemWithError(c->codes, atom);
        int32_t k;
        if (code) k = (int32_t)PyLong_AsLong(code);
        else {
            if (PyErr_Occurred()) { Py_DECREF(atom); return -1; }
            k = (int32_t)PyList_GET_SIZE(c->cats);
            PyObject *kv = PyLong_FromLong(k);
            int rc = kv ? PyDict_SetItem(c->codes, atom, kv) : -1;
            Py_XDECREF(kv);
            if (rc < 0 || PyList_Append(c->cats, atom) < 0) { Py_DECREF(atom); return -1; }
        }
        Py_DECREF(atom);
        if (tcol_valid(c, 1) < 0 || out_put(&c->data, &k, 4) < 0) return -1;
        break;
    }
    case 109: case 77: { /* binaries (whole bytes only) */
        int marked = tag == 77;
        TNEED(marked ? 5 : 4);
        n = (Py_ssize_t)be32(buf + pos);
        pos += 4;
        if (marked) {
            int bits = buf[pos++];
            if (!((n == 0 && bits == 0) || (n > 0 && bits == 8))) TFALL;
        }
        TNEED(n);
        if (c->kind == T_UNSET && tcol_start(c, T_BIN, 0) < 0) return -1;
        if (c->kind != T_BIN) TFALL;
        if (c->data.len + n > INT32_MAX) TFALL;  /* beyond int32 offsets: the general path */
        if (tcol_valid(c, 1) < 0 || out_put(&c->data, buf + pos, n) < 0) return -1;
        if (tcol_offset(c, (int32_t)c->data.len) < 0) return -1;
        pos += n;
        break;
    }
    case 106: case 108: { /* lists */
        if (tag == 108) { TNEED(4); n = (Py_ssize_t)be32(buf + pos); pos += 4; }
        else n = 0;
        if (n > end - pos) TFALL;
        if (c->kind == T_UNSET && tcol_start(c, T_LIST, 0) < 0) return -1;
        if (c->kind != T_LIST) TFALL;
        for (Py_ssize_t i = 0; i < n; i++)
            if (tcol_append(ctx, c->child, &pos, depth + 1) < 0) return -1;
        if (tag == 108) {
            TNEED(1);
            if (buf[pos] != 106) TFALL;  /* improper list */
            pos++;
        }
        if (c->child->n > INT32_MAX) TFALL;
        if (tcol_valid(c, 1) < 0 || tcol_offset(c, (int32_t)c->child->n) < 0) return -1;
        break;
    }
    case 104: case 105: { /* tuples of one arity */
        if (tag == 104) { TNEED(1); n = buf[pos]; pos += 1; }
        else { TNEED(4); n = (Py_ssize_t)be32(buf + pos); pos += 4; }
        /* Each field is a column of its own: wide tuples go to the general path. */
        if (n == 0 || n > TYPED_MAX_ARITY || n > end - pos) TFALL;
        if (c->kind == T_UNSET && tcol_start(c, T_TUPLE, n) < 0) return -1;
        if (c->kind != T_TUPLE || c->arity != n) TFALL;
        for (Py_ssize_t i = 0; i < n; i++)
            if (tcol_append(ctx, &c->fields[i], &pos, depth + 1) < 0) return -1;
        if (tcol_valid(c, 1) < 0) return -1;
        break;
    }
    default:
        TFALL;  /* maps, charlists, pids, big integers... */
    }
    c->n++;
    *ppos = pos;
    return 0;
}

static PyObject *tbuf_bytes(Out *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", b->len); }

/* The column as a nested tuple for tether.arrow to wrap in Arrow arrays. */
static PyObject *tcol_spec(TCol *c) {
    static const char *names[] = {"null", "int64", "float64", "bool", "atom", "binary", "list", "tuple"};
    if (c->kind == T_UNSET) return Py_BuildValue("(sn)", names[0], c->n);
    PyObject *valid = c->has_valid ? tbuf_bytes(&c->valid) : Py_NewRef(Py_None);
    if (!valid) return NULL;
    PyObject *extra = NULL;
    switch (c->kind) {
    case T_I64: case T_F64: case T_BOOL: extra = Py_BuildValue("(N)", tbuf_bytes(&c->data)); break;
    case T_ATOM: extra = Py_BuildValue("(NO)", tbuf_bytes(&c->data), c->cats); break;
    case T_BIN: extra = Py_BuildValue("(NN)", tbuf_bytes(&c->offs), tbuf_bytes(&c->data)); break;
    case T_LIST: extra = Py_BuildValue("(NN)", tbuf_bytes(&c->offs), tcol_spec(c->child)); break;
    case T_TUPLE: {
        PyObject *fields = PyList_New(c->arity);
        if (!fields) break;
        for (Py_ssize_t i = 0; i < c->arity; i++) {
            PyObject *f = tcol_spec(&c->fields[i]);
            if (!f) { Py_CLEAR(fields); break; }
            PyList_SET_ITEM(fields, i, f);
        }
        if (fields) extra = Py_BuildValue("(N)", fields);
        break;
    }
    }
    if (!extra) { Py_DECREF(valid); return NULL; }
    PyObject *head = Py_BuildValue("(snnN)", names[c->kind], c->n, c->nulls, valid);
    PyObject *spec = head ? PySequence_Concat(head, extra) : NULL;
    Py_XDECREF(head);
    Py_DECREF(extra);
    return spec;
}

static PyObject *decode_typed(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, max_depth, max_atoms;
    PyObject *none_atom;
    if (!PyArg_ParseTuple(args, "y*nOnn", &view, &pos, &none_atom, &max_depth, &max_atoms)) return NULL;
    Ctx ctx;
    ctx_init(&ctx, &view, BIN_BYTES, 0, 0, none_atom, max_depth, max_atoms, NULL, Py_None, 0);
    const unsigned char *buf = view.buf;
    const Py_ssize_t end = view.len;
    PyObject *index = PyDict_New();   /* key -> column number */
    PyObject *keys = PyList_New(0);
    PyObject *result = NULL, *key = NULL, *specs = NULL;
    TCol *cols = NULL;
    Py_ssize_t ncols = 0, capcols = 0, rows = 0, r = 0;
    if (!index || !keys) goto error;
    int empty = pos < end && buf[pos] == 106;
    if ((rows = rows_header(buf, end, &pos)) < 0) goto fallback;
    if (empty) goto finish;
    for (r = 0; r < rows; r++) {
        Py_ssize_t pairs = map_header(buf, end, &pos);
        if (pairs < 0) goto fallback;
        for (Py_ssize_t i = 0; i < pairs; i++) {
            key = decode_value(&ctx, &pos);
            if (!key) goto error;
            PyObject *col_no = PyDict_GetItemWithError(index, key);
            TCol *col;
            if (col_no) {
                col = &cols[PyLong_AsSsize_t(col_no)];
                if (col->n != r) goto fallback; /* duplicate key in a row */
            } else {
                if (PyErr_Occurred()) goto fallback; /* unhashable key */
                if (ncols == capcols) {
                    Py_ssize_t ncap = capcols ? capcols * 2 : 16;
                    TCol *nc = PyMem_Realloc(cols, (size_t)ncap * sizeof(TCol));
                    if (!nc) { PyErr_NoMemory(); goto error; }
                    memset(nc + capcols, 0, (size_t)(ncap - capcols) * sizeof(TCol));
                    cols = nc;
                    capcols = ncap;
                }
                col = &cols[ncols];
                for (Py_ssize_t k = 0; k < r; k++)
                    if (tcol_null(col) < 0) goto error;
                PyObject *no = PyLong_FromSsize_t(ncols);
                int rc = no ? PyDict_SetItem(index, key, no) : -1;
                Py_XDECREF(no);
                if (rc < 0 || PyList_Append(keys, key) < 0) goto error;
                ncols++;
            }
            Py_CLEAR(key);
            if (tcol_append(&ctx, col, &pos, 1) < 0) goto error;
        }
        for (Py_ssize_t c = 0; c < ncols; c++)  /* columns this row did not mention */
            if (cols[c].n == r && tcol_null(&cols[c]) < 0) goto error;
    }
    if (pos >= end || buf[pos] != 106) goto fallback; /* improper list of rows */
    pos++;
finish:
    specs = PyList_New(ncols);
    if (!specs) goto error;
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *s = tcol_spec(&cols[c]);
        if (!s) goto error;
        PyList_SET_ITEM(specs, c, s);
    }
    result = Py_BuildValue("(OOnn)", keys, specs, r, pos);
    goto cleanup;
fallback:
    set_fallback();
error:
    result = NULL;
cleanup:
    Py_XDECREF(key);
    Py_XDECREF(index);
    Py_XDECREF(keys);
    Py_XDECREF(specs);
    for (Py_ssize_t c = 0; c < capcols; c++) tcol_free(&cols[c]);
    PyMem_Free(cols);
    ctx_free(&ctx);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *atom, *improper, *freeze;
    if (!PyArg_ParseTuple(args, "OOO", &atom, &improper, &freeze)) return NULL;
    Py_XSETREF(AtomType, Py_NewRef(atom));
    if (AtomIntern) PyDict_Clear(AtomIntern);  /* its values are instances of the old type */
    Py_XSETREF(MakeImproper, Py_NewRef(improper));
    Py_XSETREF(Freeze, Py_NewRef(freeze));
    Py_RETURN_NONE;
}

/* Bulk copy for frame payloads. glibc's memcpy (rep movsb) runs 2-3x slower
 * when source and destination differ in alignment modulo 64, which is the
 * normal case for a bytes object (data at 48 mod 64) and a NumPy array. This
 * aligns the destination and streams with non-temporal stores, so the copy
 * runs at memory bandwidth whatever the relative alignment. */
/* Copy up to the destination's next 64-byte boundary; the streaming loop
 * below needs an aligned destination and leaves a tail for memcpy. */
static inline void copy_head(char **dst, const char **src, size_t *n) {
    size_t head = (64 - ((uintptr_t)*dst & 63)) & 63;
    if (head > *n) head = *n;
    memcpy(*dst, *src, head);
    *dst += head; *src += head; *n -= head;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2"))) static void copy_avx2(char *dst, const char *src, size_t n) {
    copy_head(&dst, &src, &n);
    size_t blocks = n / 128;
    for (size_t i = 0; i < blocks; i++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + 0));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(src + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(src + 96));
        _mm256_stream_si256((__m256i *)(dst + 0), a);
        _mm256_stream_si256((__m256i *)(dst + 32), b);
        _mm256_stream_si256((__m256i *)(dst + 64), c);
        _mm256_stream_si256((__m256i *)(dst + 96), d);
        src += 128; dst += 128;
    }
    _mm_sfence();
    memcpy(dst, src, n - blocks * 128);
}
#define HAVE_AVX2_PATH 1
#endif

static void copy_bulk(char *dst, const char *src, size_t n) {
#if defined(HAVE_AVX2_PATH)
    if (__builtin_cpu_supports("avx2")) { copy_avx2(dst, src, n); return; }
#endif
    memcpy(dst, src, n);  /* CPUs without AVX2 (or not x86): the C library's copy */
}

/* copy(dst, offset, src): write all of src into dst[offset:], releasing the GIL. */
static PyObject *copy(PyObject *self, PyObject *args) {
    Py_buffer d, s;
    Py_ssize_t off;
    if (!PyArg_ParseTuple(args, "w*ny*", &d, &off, &s)) return NULL;
    if (off < 0 || s.len > d.len - off || !PyBuffer_IsContiguous(&d, 'C') || !PyBuffer_IsContiguous(&s, 'C')) {
        PyBuffer_Release(&d);
        PyBuffer_Release(&s);
        PyErr_SetString(PyExc_ValueError, "copy: source does not fit in destination");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    copy_bulk((char *)d.buf + off, (const char *)s.buf, (size_t)s.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&d);
    PyBuffer_Release(&s);
    Py_RETURN_NONE;
}


/* ------------------------------------------------------------------ encoding
 *
 * Fast path of the ETF encoder for exact builtin types: dict, list, tuple,
 * str, bytes/bytearray, int (up to 64 bits), finite float, bool, None and
 * tether.Atom. Anything else raises Fallback and tether/_etf.py encodes the
 * whole term (struct mappings, big integers, paths in errors).
 */

static inline int out_byte(Out *o, unsigned char b) { return out_put(o, &b, 1); }

static inline int out_tag32(Out *o, unsigned char tag, uint32_t v) {
    unsigned char b[5] = {tag, (unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    return out_put(o, b, 5);
}

static int put_atom(Out *o, PyObject *name, int minor) {
    Py_ssize_t chars = PyUnicode_GET_LENGTH(name);
    if (chars > 255) return 1;  /* Python raises the error */
    if (minor < 2 && PyUnicode_KIND(name) == PyUnicode_1BYTE_KIND) {
        unsigned char h[3] = {100, 0, (unsigned char)chars};
        if (out_put(o, h, 3) < 0) return -1;
        return out_put(o, PyUnicode_1BYTE_DATA(name), chars) < 0 ? -1 : 0;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(name, &n);
    if (!u) return -1;
    if (n < 256) {
        unsigned char h[2] = {119, (unsigned char)n};
        if (out_put(o, h, 2) < 0) return -1;
    } else {
        unsigned char h[3] = {118, (unsigned char)(n >> 8), (unsigned char)n};
        if (out_put(o, h, 3) < 0) return -1;
    }
    return out_put(o, u, n) < 0 ? -1 : 0;
}

enum { E_LIST, E_TUPLE, E_DICT };
typedef struct {
    int kind;
    PyObject *obj;        /* borrowed: kept alive by its parent */
    Py_ssize_t pos;       /* next index, or PyDict_Next position */
    PyObject *pending;    /* borrowed dict value still to write */
} EFrame;

/* encode(term, minor, none_atom, tagged_bytes, max_depth) -> bytes starting with 131 */
static PyObject *encode(PyObject *self, PyObject *args) {
    PyObject *term, *none_atom;
    int minor, tagged;
    Py_ssize_t max_depth;
    if (!PyArg_ParseTuple(args, "OiOpn", &term, &minor, &none_atom, &tagged, &max_depth)) return NULL;
    Out o = {NULL, 0, 0};
    EFrame *stack = NULL;
    Py_ssize_t depth = 0, cap = 0;
    PyObject *value = term, *result = NULL;
    if (out_byte(&o, 131) < 0) goto error;
    for (;;) {
        PyTypeObject *t = Py_TYPE(value);
        if (t == &PyUnicode_Type) {
            Py_ssize_t n;
            const char *u = PyUnicode_AsUTF8AndSize(value, &n);
            if (!u) { PyErr_Clear(); goto fallback; }  /* lone surrogates: Python reports */
            if (n > 0xFFFFFFFFLL || out_tag32(&o, 109, (uint32_t)n) < 0 || out_put(&o, u, n) < 0) goto error;
        } else if (t == (PyTypeObject *)AtomType) {
            int rc = put_atom(&o, value, minor);
            if (rc < 0) goto error;
            if (rc > 0) goto fallback;
        } else if (t == &PyLong_Type) {
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow) goto fallback;  /* beyond 64 bits: Python writes the big integer */
            if (v == -1 && PyErr_Occurred()) goto error;
            if (v >= 0 && v <= 255) {
                unsigned char b[2] = {97, (unsigned char)v};
                if (out_put(&o, b, 2) < 0) goto error;
            } else if (v >= -2147483648LL && v <= 2147483647LL) {
                if (out_tag32(&o, 98, (uint32_t)(int32_t)v) < 0) goto error;
            } else {
                unsigned long long mag = v < 0 ? (unsigned long long)(-(v + 1)) + 1 : (unsigned long long)v;
                unsigned char b[11] = {110, 0, v < 0};
                int n = 0;
                while (mag) { b[3 + n++] = (unsigned char)(mag & 0xFF); mag >>= 8; }
                b[1] = (unsigned char)n;
                if (out_put(&o, b, 3 + n) < 0) goto error;
            }
        } else if (t == &PyFloat_Type) {
            double d = PyFloat_AS_DOUBLE(value);
            if (!isfinite(d) || minor == 0) goto fallback;
            uint64_t bits;
            memcpy(&bits, &d, 8);
            unsigned char b[9] = {70};
            for (int i = 0; i < 8; i++) b[1 + i] = (unsigned char)(bits >> (56 - 8 * i));
            if (out_put(&o, b, 9) < 0) goto error;
        } else if (value == Py_True || value == Py_False) {
            static const unsigned char tr[] = {119, 4, 't', 'r', 'u', 'e'}, fa[] = {119, 5, 'f', 'a', 'l', 's', 'e'};
            static const unsigned char tr1[] = {100, 0, 4, 't', 'r', 'u', 'e'}, fa1[] = {100, 0, 5, 'f', 'a', 'l', 's', 'e'};
            int ok = value == Py_True ? (minor < 2 ? out_put(&o, tr1, 7) : out_put(&o, tr, 6))
                                      : (minor < 2 ? out_put(&o, fa1, 8) : out_put(&o, fa, 7));
            if (ok < 0) goto error;
        } else if (value == Py_None) {
            if (none_atom == Py_None) goto fallback;
            int rc = put_atom(&o, none_atom, minor);
            if (rc < 0) goto error;
            if (rc > 0) goto fallback;
        } else if (t == &PyBytes_Type || t == &PyByteArray_Type) {
            Py_ssize_t n = t == &PyBytes_Type ? PyBytes_GET_SIZE(value) : PyByteArray_GET_SIZE(value);
            const char *d = t == &PyBytes_Type ? PyBytes_AS_STRING(value) : PyByteArray_AS_STRING(value);
            if (n > 0xFFFFFFFFLL) goto fallback;
            if (tagged) {
                if (out_tag32(&o, 77, (uint32_t)n) < 0 || out_byte(&o, n ? 8 : 0) < 0) goto error;
            } else if (out_tag32(&o, 109, (uint32_t)n) < 0) goto error;
            if (out_put(&o, d, n) < 0) goto error;
        } else if (t == &PyDict_Type || t == &PyList_Type || t == &PyTuple_Type) {
            Py_ssize_t n = t == &PyDict_Type ? PyDict_GET_SIZE(value) : Py_SIZE(value);
            if (t == &PyList_Type) {
                if (n == 0) { if (out_byte(&o, 106) < 0) goto error; goto next; }
                if (n < 65536) {  /* lists of bytes are STRING_EXT, as term_to_binary writes them */
                    int small = 1;
                    for (Py_ssize_t i = 0; i < n && small; i++) {
                        PyObject *x = PyList_GET_ITEM(value, i);
                        if (!PyLong_CheckExact(x)) { small = 0; break; }
                        long v = PyLong_AsLong(x);
                        if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); small = 0; break; }
                        small = v >= 0 && v <= 255;
                    }
                    if (small) {
                        unsigned char h[3] = {107, (unsigned char)(n >> 8), (unsigned char)n};
                        if (out_put(&o, h, 3) < 0 || out_reserve(&o, n) < 0) goto error;
                        for (Py_ssize_t i = 0; i < n; i++) o.p[o.len++] = (char)PyLong_AsLong(PyList_GET_ITEM(value, i));
                        goto next;
                    }
                }
                if (out_tag32(&o, 108, (uint32_t)n) < 0) goto error;
            } else if (t == &PyTuple_Type) {
                if (n < 256) {
                    unsigned char h[2] = {104, (unsigned char)n};
                    if (out_put(&o, h, 2) < 0) goto error;
                } else if (out_tag32(&o, 105, (uint32_t)n) < 0) goto error;
                if (n == 0) goto next;
            } else {
                if (out_tag32(&o, 116, (uint32_t)n) < 0) goto error;
                if (n == 0) goto next;
            }
            if (depth >= max_depth) goto fallback;
            if (depth == cap) {
                Py_ssize_t ncap = cap ? cap * 2 : 32;
                EFrame *ns = PyMem_Realloc(stack, (size_t)ncap * sizeof(EFrame));
                if (!ns) { PyErr_NoMemory(); goto error; }
                stack = ns;
                cap = ncap;
            }
            stack[depth].kind = t == &PyDict_Type ? E_DICT : t == &PyList_Type ? E_LIST : E_TUPLE;
            stack[depth].obj = value;
            stack[depth].pos = 0;
            stack[depth].pending = NULL;
            depth++;
        } else {
            goto fallback;  /* struct mappings, subclasses, numpy scalars...: Python */
        }
    next:
        /* Find the next value to write, closing finished containers. */
        for (;;) {
            if (depth == 0) goto done;
            EFrame *f = &stack[depth - 1];
            if (f->kind == E_DICT) {
                if (f->pending) { value = f->pending; f->pending = NULL; break; }
                PyObject *k, *v;
                if (PyDict_Next(f->obj, &f->pos, &k, &v)) { value = k; f->pending = v; break; }
                depth--;
                continue;
            }
            Py_ssize_t n = Py_SIZE(f->obj);
            if (f->pos < n) {
                value = f->kind == E_LIST ? PyList_GET_ITEM(f->obj, f->pos) : PyTuple_GET_ITEM(f->obj, f->pos);
                f->pos++;
                break;
            }
            if (f->kind == E_LIST && out_byte(&o, 106) < 0) goto error;
            depth--;
        }
    }
done:
    result = PyBytes_FromStringAndSize(o.p, o.len);
    goto cleanup;
fallback:
    if (!PyErr_Occurred()) PyErr_SetString(Fallback, "fallback");
error:
    result = NULL;
cleanup:
    PyMem_Free(o.p);
    PyMem_Free(stack);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, "Encode exact builtin types as ETF; raises Fallback for anything else."},
    {"copy", copy, METH_VARARGS, "Copy a buffer into another at an offset, fast for any relative alignment."},
    {"decode", decode, METH_VARARGS, "Decode one ETF term at an offset; raises Fallback when Python must."},
    {"decode_columns", decode_columns, METH_VARARGS, "Decode a list of maps into per-key column lists."},
    {"decode_typed", decode_typed, METH_VARARGS, "Decode a list of maps into Arrow-layout column buffers."},
    {"configure", configure, METH_VARARGS, "Set the Python types and helpers the decoder builds with."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    StructKey = PyUnicode_InternFromString("__struct__");
    if (!StructKey) return NULL;
    AtomIntern = PyDict_New();
    if (!AtomIntern) return NULL;
    Fallback = PyErr_NewException("tether._speedups.Fallback", NULL, NULL);
    if (!Fallback || PyModule_AddObjectRef(m, "Fallback", Fallback) < 0) return NULL;
    return m;
}
