/* A list of maps straight into Arrow-layout column buffers: decode_typed.
 *
 * int64, float64, bit-packed bool, binary (int32 offsets), atoms as
 * dictionary codes, and lists and tuples of those, with validity bitmaps.
 * No Python object is made per value. It covers the clean cases of the
 * inference table in tether/arrow.py and gives the same arrays; anything
 * else (mixed kinds, maps, charlists, big integers, bitstrings...) raises
 * Fallback and the general column path decides, with its warnings and errors.
 */
#include "common.h"

#include <math.h>

enum { T_UNSET, T_I64, T_F64, T_BOOL, T_ATOM, T_BIN, T_LIST, T_TUPLE };
/* Columns nest lists and tuples by C recursion: deeper ones go to the general path. */
#define TYPED_MAX_DEPTH 64
/* Each tuple field is a column of its own: wider tuples go to the general path. */
#define TYPED_MAX_ARITY 256

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

/* Set bit i of a bitmap held in b (grown, new bytes zeroed, as needed). */
static int bits_set(Out *b, Py_ssize_t i, int on) {
    Py_ssize_t need = i / 8 + 1;
    if (need > b->len && out_zeros(b, need - b->len) < 0) return -1;
    if (on) b->p[i / 8] |= (char)(1 << (i % 8));
    return 0;
}

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
    case T_I64: case T_F64: if (out_zeros(&c->data, 8 * n) < 0) return -1; break;
    case T_BOOL: if (n && bits_set(&c->data, n - 1, 0) < 0) return -1; break;
    case T_ATOM:
        if (out_zeros(&c->data, 4 * n) < 0) return -1;
        if (!(c->codes = PyDict_New()) || !(c->cats = PyList_New(0))) return -1;
        break;
    case T_BIN: case T_LIST:
        if (out_zeros(&c->offs, 4 * (n + 1)) < 0) return -1;
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

/* The column's kind is `kind` from now on: 0, or -1 with Fallback when it already holds another. */
static int tcol_kind(State *st, TCol *c, int kind, Py_ssize_t arity) {
    if (c->kind == T_UNSET && tcol_start(c, kind, arity) < 0) return -1;
    if (c->kind != kind || (kind == T_TUPLE && c->arity != arity)) {
        PyErr_SetString(st->fallback, "typed");
        return -1;
    }
    return 0;
}

static int tcol_valid(TCol *c, int on) {
    if (!on && !c->has_valid) {
        /* the first null: every slot so far was valid */
        c->has_valid = 1;
        for (Py_ssize_t i = 0; i < c->n; i++)
            if (bits_set(&c->valid, i, 1) < 0) return -1;
    }
    if (!c->has_valid) return 0;
    return bits_set(&c->valid, c->n, on);
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
    case T_I64: case T_F64: if (out_zeros(&c->data, 8) < 0) return -1; break;
    case T_BOOL: if (bits_set(&c->data, c->n, 0) < 0) return -1; break;
    case T_ATOM: if (out_zeros(&c->data, 4) < 0) return -1; break;
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

/* ------------------------------------------------------------------ one value per kind
 * Each reads the term after its tag at *ppos into column c, returning 0
 * (with *ppos past the term, the slot not yet counted) or -1 with Fallback
 * (or another error) set. */

#define TFALL do { PyErr_SetString(ctx->st->fallback, "typed"); return -1; } while (0)
#define TNEED(k) do { if ((Py_ssize_t)(k) > ctx->end - pos) TFALL; } while (0)

static int tcol_append(Ctx *ctx, TCol *c, Py_ssize_t *ppos, Py_ssize_t depth);

/* Integers that fit int64. */
static int typed_int(Ctx *ctx, TCol *c, unsigned char tag, Py_ssize_t *ppos) {
    const unsigned char *buf = ctx->buf;
    Py_ssize_t pos = *ppos;
    int64_t v;
    if (tag == SMALL_INTEGER_EXT) { TNEED(1); v = buf[pos]; pos += 1; }
    else if (tag == INTEGER_EXT) { TNEED(4); v = (int32_t)be32(buf + pos); pos += 4; }
    else {
        TNEED(2);
        Py_ssize_t n = buf[pos];
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
    if (tcol_kind(ctx->st, c, T_I64, 0) < 0) return -1;
    if (tcol_valid(c, 1) < 0 || out_put(&c->data, &v, 8) < 0) return -1;
    *ppos = pos;
    return 0;
}

static int typed_float(Ctx *ctx, TCol *c, Py_ssize_t *ppos) {
    Py_ssize_t pos = *ppos;
    TNEED(8);
    uint64_t bits = ((uint64_t)be32(ctx->buf + pos) << 32) | be32(ctx->buf + pos + 4);
    double d;
    memcpy(&d, &bits, 8);
    if (!isfinite(d)) TFALL;
    if (tcol_kind(ctx->st, c, T_F64, 0) < 0) return -1;
    if (tcol_valid(c, 1) < 0 || out_put(&c->data, &d, 8) < 0) return -1;
    *ppos = pos + 8;
    return 0;
}

/* The dictionary code of atom in c, added to its categories when new; -1 with an error set. */
static int32_t atom_code(TCol *c, PyObject *atom) {
    PyObject *code = PyDict_GetItemWithError(c->codes, atom);
    if (code) return (int32_t)PyLong_AsLong(code);
    if (PyErr_Occurred()) return -1;
    int32_t k = (int32_t)PyList_GET_SIZE(c->cats);
    PyObject *kv = PyLong_FromLong(k);
    int rc = kv ? PyDict_SetItem(c->codes, atom, kv) : -1;
    Py_XDECREF(kv);
    if (rc < 0 || PyList_Append(c->cats, atom) < 0) return -1;
    return k;
}

/* Atoms: true/false (bool), nil (null), or dictionary codes. 1 when the atom was a null, already counted. */
static int typed_atom(Ctx *ctx, TCol *c, unsigned char tag, Py_ssize_t *ppos) {
    const unsigned char *buf = ctx->buf;
    Py_ssize_t pos = *ppos, n;
    if (tag == SMALL_ATOM_UTF8_EXT || tag == SMALL_ATOM_EXT) { TNEED(1); n = buf[pos]; pos += 1; }
    else { TNEED(2); n = (buf[pos] << 8) | buf[pos + 1]; pos += 2; }
    TNEED(n);
    PyObject *atom = atom_value(ctx, buf + pos, n, tag == SMALL_ATOM_EXT || tag == ATOM_EXT);
    *ppos = pos + n;
    if (!atom) return -1;
    int rc;
    if (atom == Py_None) {
        rc = tcol_null(c) < 0 ? -1 : 1;  /* counts the slot itself */
    } else if (atom == Py_True || atom == Py_False) {
        rc = tcol_kind(ctx->st, c, T_BOOL, 0);
        if (rc == 0 && (tcol_valid(c, 1) < 0 || bits_set(&c->data, c->n, atom == Py_True) < 0)) rc = -1;
    } else {
        rc = tcol_kind(ctx->st, c, T_ATOM, 0);
        int32_t k = rc < 0 ? -1 : atom_code(c, atom);
        if (k < 0 || tcol_valid(c, 1) < 0 || out_put(&c->data, &k, 4) < 0) rc = -1;
    }
    Py_DECREF(atom);
    return rc;
}

/* Binaries of whole bytes. */
static int typed_binary(Ctx *ctx, TCol *c, unsigned char tag, Py_ssize_t *ppos) {
    Py_ssize_t pos = *ppos;
    int marked = tag == BIT_BINARY_EXT;
    TNEED(marked ? 5 : 4);
    Py_ssize_t n = (Py_ssize_t)be32(ctx->buf + pos);
    pos += 4;
    if (marked) {
        int bits = ctx->buf[pos++];
        if (!((n == 0 && bits == 0) || (n > 0 && bits == 8))) TFALL;
    }
    TNEED(n);
    if (tcol_kind(ctx->st, c, T_BIN, 0) < 0) return -1;
    if (c->data.len + n > INT32_MAX) TFALL;  /* beyond int32 offsets: the general path */
    if (tcol_valid(c, 1) < 0 || out_put(&c->data, ctx->buf + pos, n) < 0) return -1;
    if (tcol_offset(c, (int32_t)c->data.len) < 0) return -1;
    *ppos = pos + n;
    return 0;
}

/* Proper lists (NIL_EXT or LIST_EXT) of one kind. */
static int typed_list(Ctx *ctx, TCol *c, unsigned char tag, Py_ssize_t *ppos, Py_ssize_t depth) {
    Py_ssize_t pos = *ppos, n = 0;
    if (tag == LIST_EXT) { TNEED(4); n = (Py_ssize_t)be32(ctx->buf + pos); pos += 4; }
    if (n > ctx->end - pos) TFALL;
    /* as decode_value counts: a LIST_EXT of no elements counts its (NIL) tail */
    if (count_terms(ctx, n ? n : tag == LIST_EXT) < 0) return -1;
    if (tcol_kind(ctx->st, c, T_LIST, 0) < 0) return -1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (tcol_append(ctx, c->child, &pos, depth + 1) < 0) return -1;
    if (tag == LIST_EXT) {
        TNEED(1);
        if (ctx->buf[pos] != NIL_EXT) TFALL;  /* improper list */
        pos++;
    }
    if (c->child->n > INT32_MAX) TFALL;
    if (tcol_valid(c, 1) < 0 || tcol_offset(c, (int32_t)c->child->n) < 0) return -1;
    *ppos = pos;
    return 0;
}

/* Tuples of one arity, each field a column. */
static int typed_tuple(Ctx *ctx, TCol *c, unsigned char tag, Py_ssize_t *ppos, Py_ssize_t depth) {
    Py_ssize_t pos = *ppos, n;
    if (tag == SMALL_TUPLE_EXT) { TNEED(1); n = ctx->buf[pos]; pos += 1; }
    else { TNEED(4); n = (Py_ssize_t)be32(ctx->buf + pos); pos += 4; }
    if (n == 0 || n > TYPED_MAX_ARITY || n > ctx->end - pos) TFALL;
    if (count_terms(ctx, n) < 0) return -1;
    if (tcol_kind(ctx->st, c, T_TUPLE, n) < 0) return -1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (tcol_append(ctx, &c->fields[i], &pos, depth + 1) < 0) return -1;
    if (tcol_valid(c, 1) < 0) return -1;
    *ppos = pos;
    return 0;
}

/* Append the term at *ppos to c. -1 with Fallback when the column is not a clean typed one. */
static int tcol_append(Ctx *ctx, TCol *c, Py_ssize_t *ppos, Py_ssize_t depth) {
    Py_ssize_t pos = *ppos;
    if (depth > ctx->max_depth || depth > TYPED_MAX_DEPTH) TFALL;  /* deep nesting: the general path */
    TNEED(1);
    unsigned char tag = ctx->buf[pos++];
    int rc;
    switch (tag) {
    case SMALL_INTEGER_EXT: case INTEGER_EXT: case SMALL_BIG_EXT: rc = typed_int(ctx, c, tag, &pos); break;
    case NEW_FLOAT_EXT: rc = typed_float(ctx, c, &pos); break;
    case SMALL_ATOM_UTF8_EXT: case SMALL_ATOM_EXT: case ATOM_UTF8_EXT: case ATOM_EXT:
        rc = typed_atom(ctx, c, tag, &pos);
        break;
    case BINARY_EXT: case BIT_BINARY_EXT: rc = typed_binary(ctx, c, tag, &pos); break;
    case NIL_EXT: case LIST_EXT: rc = typed_list(ctx, c, tag, &pos, depth); break;
    case SMALL_TUPLE_EXT: case LARGE_TUPLE_EXT: rc = typed_tuple(ctx, c, tag, &pos, depth); break;
    default: TFALL;  /* maps, charlists, pids, big integers... */
    }
    if (rc < 0) return -1;
    if (rc == 0) c->n++;  /* a null (rc 1) counted its own slot */
    *ppos = pos;
    return 0;
}

#undef TNEED
#undef TFALL

/* ------------------------------------------------------------------ specs */

static PyObject *out_bytes(Out *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", b->len); }

static PyObject *tcol_spec(TCol *c);

/* The spec fields after (kind, n, nulls, validity), per kind. */
static PyObject *tcol_buffers(TCol *c) {
    switch (c->kind) {
    case T_I64: case T_F64: case T_BOOL: return Py_BuildValue("(N)", out_bytes(&c->data));
    case T_ATOM: return Py_BuildValue("(NO)", out_bytes(&c->data), c->cats);
    case T_BIN: return Py_BuildValue("(NN)", out_bytes(&c->offs), out_bytes(&c->data));
    case T_LIST: return Py_BuildValue("(NN)", out_bytes(&c->offs), tcol_spec(c->child));
    default: break;
    }
    PyObject *fields = PyList_New(c->arity);  /* T_TUPLE */
    if (!fields) return NULL;
    for (Py_ssize_t i = 0; i < c->arity; i++) {
        PyObject *f = tcol_spec(&c->fields[i]);
        if (!f) { Py_DECREF(fields); return NULL; }
        PyList_SET_ITEM(fields, i, f);
    }
    return Py_BuildValue("(N)", fields);
}

/* The column as a nested tuple for tether.arrow to wrap in Arrow arrays (see tether._etf.Columns). */
static PyObject *tcol_spec(TCol *c) {
    static const char *names[] = {"null", "int64", "float64", "bool", "atom", "binary", "list", "tuple"};
    if (c->kind == T_UNSET) return Py_BuildValue("(sn)", names[0], c->n);
    PyObject *valid = c->has_valid ? out_bytes(&c->valid) : Py_NewRef(Py_None);
    if (!valid) return NULL;
    PyObject *extra = tcol_buffers(c);
    if (!extra) { Py_DECREF(valid); return NULL; }
    PyObject *head = Py_BuildValue("(snnN)", names[c->kind], c->n, c->nulls, valid);
    PyObject *spec = head ? PySequence_Concat(head, extra) : NULL;
    Py_XDECREF(head);
    Py_DECREF(extra);
    return spec;
}

/* ------------------------------------------------------------------ entry point */

typedef struct {
    PyObject *index;  /* key -> column number */
    PyObject *keys;
    TCol *cols;
    Py_ssize_t n, cap;
    HashCounts counts;  /* the key-safety rule, over the index's keys */
} Typed;

/* The column of key (borrowed) in row r, made (r nulls long) when key is new; NULL with an error set. */
static TCol *typed_column(State *st, Typed *t, PyObject *key, Py_ssize_t r) {
    PyObject *col_no = PyDict_GetItemWithError(t->index, key);
    if (col_no) {
        TCol *col = &t->cols[PyLong_AsSsize_t(col_no)];
        if (col->n == r) return col;
        PyErr_SetString(st->fallback, "duplicate key in a row");
        return NULL;
    }
    if (PyErr_Occurred()) { set_fallback(st); return NULL; } /* unhashable key */
    PyObject *counted = safe_key(st, &t->counts, Py_NewRef(key));  /* a new column: bounded like a map key */
    if (!counted) return NULL;
    Py_DECREF(counted);  /* hashable already, so the key itself */
    if (t->n == t->cap) {
        Py_ssize_t ncap = t->cap ? t->cap * 2 : 16;
        TCol *nc = PyMem_Realloc(t->cols, (size_t)ncap * sizeof(TCol));
        if (!nc) { PyErr_NoMemory(); return NULL; }
        memset(nc + t->cap, 0, (size_t)(ncap - t->cap) * sizeof(TCol));
        t->cols = nc;
        t->cap = ncap;
    }
    TCol *col = &t->cols[t->n];
    for (Py_ssize_t k = 0; k < r; k++)
        if (tcol_null(col) < 0) return NULL;
    PyObject *no = PyLong_FromSsize_t(t->n);
    int rc = no ? PyDict_SetItem(t->index, key, no) : -1;
    Py_XDECREF(no);
    if (rc < 0 || PyList_Append(t->keys, key) < 0) return NULL;
    t->n++;
    return col;
}

/* Append the map at *pos (row r) to its columns; -1 with an error set. */
static int typed_row(Ctx *ctx, Typed *t, Py_ssize_t *pos, Py_ssize_t r) {
    Py_ssize_t pairs = map_header(ctx->buf, ctx->end, pos);
    if (pairs < 0) { PyErr_SetString(ctx->st->fallback, "not a map"); return -1; }
    if (count_terms(ctx, 2 * pairs) < 0) return -1;  /* its keys and values, as the term decoder counts */
    for (Py_ssize_t i = 0; i < pairs; i++) {
        PyObject *key = decode_value(ctx, pos);
        if (!key) return -1;
        TCol *col = typed_column(ctx->st, t, key, r);
        Py_DECREF(key);
        if (!col || tcol_append(ctx, col, pos, 1) < 0) return -1;
    }
    for (Py_ssize_t c = 0; c < t->n; c++)  /* columns this row did not mention */
        if (t->cols[c].n == r && tcol_null(&t->cols[c]) < 0) return -1;
    return 0;
}

static PyObject *typed_specs(Typed *t) {
    PyObject *specs = PyList_New(t->n);
    if (!specs) return NULL;
    for (Py_ssize_t c = 0; c < t->n; c++) {
        PyObject *s = tcol_spec(&t->cols[c]);
        if (!s) { Py_DECREF(specs); return NULL; }
        PyList_SET_ITEM(specs, c, s);
    }
    return specs;
}

/* decode_typed(buf, pos, options) -> (keys, specs, rows, end). Reads only none_atom and the limits. */
PyObject *sp_decode_typed(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = module_state(module);
    Py_buffer view;
    Py_ssize_t pos, rows = 0, r = 0;
    CodecOptions *o;
    if (decoder_args(st, args, nargs, 3, 3, "decode_typed", &view, &pos, &o) < 0) return NULL;
    Ctx ctx;
    ctx_init(&ctx, st, o, &view, NULL);
    /* Keys decode as they would by default; values never reach Python objects but atoms. */
    ctx.binmode = BIN_BYTES;
    ctx.chars = CHARS_LIST_WARN;
    ctx.atoms_str = 0;
    ctx.struct_hook = NULL;
    const unsigned char *buf = view.buf;
    const Py_ssize_t end = view.len;
    Typed t = {PyDict_New(), PyList_New(0), NULL, 0, 0, {NULL, 0, 0}};
    PyObject *result = NULL, *specs = NULL;
    if (!t.index || !t.keys) goto cleanup;
    int empty = pos < end && buf[pos] == NIL_EXT;
    if ((rows = rows_header(buf, end, &pos)) < 0) goto fallback;
    if (count_rows(&ctx, rows, empty) < 0) goto cleanup;
    if (!empty) {
        for (r = 0; r < rows; r++)
            if (typed_row(&ctx, &t, &pos, r) < 0) goto cleanup;
        if (pos >= end || buf[pos] != NIL_EXT) goto fallback; /* improper list of rows */
        pos++;
    }
    if ((specs = typed_specs(&t))) result = Py_BuildValue("(OOnn)", t.keys, specs, r, pos);
    goto cleanup;
fallback:
    set_fallback(st);
cleanup:
    Py_XDECREF(t.index);
    Py_XDECREF(t.keys);
    Py_XDECREF(specs);
    for (Py_ssize_t c = 0; c < t.cap; c++) tcol_free(&t.cols[c]);
    PyMem_Free(t.cols);
    counts_free(&t.counts);
    ctx_free(&ctx);
    PyBuffer_Release(&view);
    return result;
}
