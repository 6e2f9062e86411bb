/* What the files of tether._speedups share: module state, the parsed codec
 * options, the growable output buffer, and the decoding context that the
 * term decoder lends to both column decoders.
 *
 * One extension, one job per file:
 *   module.c   module definition, state, CodecOptions, configure(), TAGS
 *   decode.c   ETF term decoder (decode, decode_whole), and the map-key cache
 *   columns.c  list of maps -> one Python list per key (decode_columns)
 *   typed.c    list of maps -> Arrow-layout column buffers (decode_typed)
 *   encode.c   ETF encoder for exact builtin types (encode)
 *   copy.c     bulk copy for frame payloads (copy)
 *   keys.c     the key-safety rule: hashable map keys, bounded hash collisions
 *   metrics.c  tether.metrics' per-key counters and decision ring (Accumulator); metrics.h its entry
 */
#ifndef TETHER_COMMON_H
#define TETHER_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "tags.h"

/* The calls tether/_etf/native.py makes of this module (its API): bumped when they change. */
#define SPEEDUPS_API 5

/* Map keys this short go through the key cache (decode.c). */
#define KEY_CACHE_TEXT 32
/* The key cache has 2**KEY_CACHE_BITS slots. */
#define KEY_CACHE_BITS 9

/* Only the keys of maps this small: a larger map is rarely a record, and its keys would evict the others. */
#define KEY_CACHE_PAIRS 32

/* One key of the key cache: the bytes it was decoded from, and the key (an interned str, or bytes). */
typedef struct {
    PyObject *value;        /* owned, or NULL: an empty slot */
    Py_ssize_t n;
    int as_bytes;           /* value is bytes, not str */
    uint64_t text[KEY_CACHE_TEXT / 8];  /* the bytes, zero-padded: compared a word at a time */
} KeySlot;

/* Per-module state: what configure() sets and what module_exec() builds. */
typedef struct {
    PyObject *fallback;       /* exception: the Python codec takes the whole term */
    PyObject *atom_type;      /* tether.Atom */
    PyObject *make_improper;  /* (items, tail) -> value */
    PyObject *freeze;         /* key -> hashable key */
    PyObject *struct_key;     /* "__struct__" */
    PyObject *atom_intern;    /* UTF-8 atom text (bytes) -> shared Atom */
    PyObject *options_type;   /* CodecOptions */
    Py_ssize_t max_same_hash; /* keys of one map that may share a hash (tether/_etf/keys.py) */
    uint64_t seed;            /* per process, random: keys the tables a peer fills */
    KeySlot *keys;            /* the key cache: 2**KEY_CACHE_BITS slots, direct-mapped (decode.c) */
} State;

/* How binaries and charlists decode (see tether._etf.Options). */
enum { BIN_BYTES, BIN_STR, BIN_TAGGED };
enum {
    CHARS_LIST_WARN,  /* lists; text-like ones fall back so that Python can warn */
    CHARS_STR,        /* Latin-1 strings */
    CHARS_LIST,       /* lists, no warning */
};

/* _speedups.CodecOptions: one tether._etf.Options, parsed once. */
typedef struct {
    PyObject_HEAD
    int binmode;              /* BIN_* */
    int chars;                /* CHARS_* */
    int atoms_str;
    PyObject *none_atom;      /* str, or NULL when None stays unmapped */
    const char *none_utf8;    /* its UTF-8 text, or NULL: compare decoded names instead */
    Py_ssize_t none_len;
    Py_ssize_t max_depth;
    Py_ssize_t max_atoms;
    Py_ssize_t max_terms;     /* Limits.max_terms: terms in one value, as tether/_limits.py counts them */
    PyObject *struct_hook;    /* dict with __struct__ -> value, or NULL */
    Py_ssize_t views;         /* binaries this large decode as views (0: never) */
    int minor;                /* minor_version for encoding */
    int plain;                /* encoding: atoms fall back, and Python refuses them (tether._etf.Options.plain) */
} CodecOptions;

State *module_state(PyObject *module);
/* The CodecOptions in arg, or NULL with TypeError set. */
CodecOptions *codec_options(State *st, PyObject *arg);
/* Make sure the pending error is Fallback: the Python codec redoes the term. */
void set_fallback(State *st);

/* ------------------------------------------------------------ output buffer */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Out;

static inline int out_reserve(Out *o, Py_ssize_t n) {
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

static inline int out_zeros(Out *o, Py_ssize_t n) {
    if (out_reserve(o, n) < 0) return -1;
    memset(o->p + o->len, 0, (size_t)n);
    o->len += n;
    return 0;
}

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* ------------------------------------------------------------ key safety (keys.c) */

/* How many keys of one map have each Python hash value, for the keys the
 * rule counts: open addressing, power-of-two capacity, empty until needed. */
typedef struct {
    Py_hash_t hash;
    Py_ssize_t n;           /* 0: an empty slot */
} HashCount;

typedef struct {
    HashCount *slots;
    Py_ssize_t cap, used;
} HashCounts;

void counts_release(HashCounts *c);

/* Free what c holds; most maps never count a key, so this is usually nothing. */
static inline void counts_free(HashCounts *c) {
    if (c->slots) counts_release(c);
}

/* ------------------------------------------------------------ term decoding */

typedef struct {
    int kind;
    PyObject *obj;          /* list, tuple or dict being filled (owned) */
    Py_ssize_t index;       /* next slot for list/tuple */
    Py_ssize_t remaining;   /* terms still expected */
    PyObject *key;          /* pending map key (owned) or NULL */
    Py_ssize_t pairs;       /* declared pairs, for the duplicate check */
    HashCounts counts;      /* the key-safety rule's counts for this map */
} Frame;

typedef struct {
    const unsigned char *p; /* atom text inside the input buffer */
    Py_ssize_t n;
    int latin;
    PyObject *value;        /* owned */
} AtomSlot;

/* This call's atoms, by their bytes in the input: open addressing, capacity 2**bits. */
typedef struct {
    AtomSlot *slots;
    Py_ssize_t cap;
    Py_ssize_t used;
    int bits;
} AtomCache;

typedef struct {
    State *st;
    const unsigned char *buf;
    Py_ssize_t end;
    PyObject *struct_hook;   /* borrowed; NULL when structs stay dicts */
    PyObject *view_base;     /* borrowed memoryview of the input, or NULL */
    Py_ssize_t view_min;     /* binaries this large become views of view_base */
    int binmode, chars, atoms_str;
    PyObject *none_atom;     /* borrowed str, or NULL */
    const char *none_utf8;
    Py_ssize_t none_len;
    Py_ssize_t max_depth, max_atoms;
    Py_ssize_t terms, max_terms;  /* terms counted so far in this value (never above max_terms), and the limit */
    AtomCache atoms;
    Frame *stack;
    Py_ssize_t cap;
} Ctx;

/* Count n more terms of the value. Containers (and charlists) count their elements when they open,
 * so this is one compare per container, not per term; see tether/_limits.py for what counts. 0, or -1
 * with Fallback set past the limit: the Python decoder counts the same way and reports it with a path. */
static inline int count_terms(Ctx *ctx, Py_ssize_t n) {
    if (n > ctx->max_terms - ctx->terms) {  /* terms <= max_terms: no overflow */
        PyErr_SetString(ctx->st->fallback, "terms");
        return -1;
    }
    ctx->terms += n;
    return 0;
}

/* A context over view with options o; view_base (or NULL) lends large binaries. */
void ctx_init(Ctx *c, State *st, const CodecOptions *o, Py_buffer *view, PyObject *view_base);
void ctx_free(Ctx *c);
/* Decode the term at *ppos; on success set *ppos past it. NULL with Fallback (or another error) set.
 * It counts the terms inside the value (count_terms); the caller counts the value itself: counting it
 * here made GCC schedule the per-term loop worse (5 more instructions a term, measured with callgrind). */
PyObject *decode_value(Ctx *ctx, Py_ssize_t *ppos);
/* Forget every cached map key (module.c: configure() and teardown). */
void keys_clear(State *st);
/* New reference to the value of the atom p[0:n], or NULL with Fallback/another error set. */
PyObject *atom_value(Ctx *ctx, const unsigned char *p, Py_ssize_t n, int latin);
/* The key to store for a key the rule counts (stolen), in a map whose counts are c: key
 * itself, or its hashable stand-in; NULL with Fallback set when Python must report it (a
 * key that cannot be hashed, too many keys with one hash), or with another error. */
PyObject *counted_key(State *st, HashCounts *c, PyObject *key);

/* Ints inside +-2**SMALL_INT_BITS hash to themselves (tether/_etf/keys.py SMALL_INT). */
#define SMALL_INT_BITS 60

/* 1 when key's hash is out of the peer's hands (str, Atom, bytes, bool, None, ints
 * below 2**60): the keys the rule does not count. Inline: every map key asks. */
static inline int key_trusted(const State *st, PyObject *key) {
    PyTypeObject *t = Py_TYPE(key);
    if (t == (PyTypeObject *)st->atom_type || t == &PyUnicode_Type || t == &PyBytes_Type || t == &PyBool_Type
        || key == Py_None)
        return 1;
    if (t != &PyLong_Type) return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(key, &overflow);
    return !overflow && v > -(1LL << SMALL_INT_BITS) && v < (1LL << SMALL_INT_BITS);
}

/* key (stolen) as a map stores it: trusted keys as they are, others through counted_key. */
static inline PyObject *safe_key(State *st, HashCounts *c, PyObject *key) {
    return key_trusted(st, key) ? key : counted_key(st, c, key);
}

/* A 64-bit mix keyed by the process seed, for tables whose keys a peer chooses:
 * splitmix64's finalizer over the seeded value, so that without the seed a peer
 * cannot pick values that share slots. */
static inline uint64_t keyed_mix(const State *st, uint64_t x) {
    x ^= st->seed;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The row list both column decoders read: its number of rows (0 for NIL_EXT),
 * with *pos moved past the list header; -1 when it is not a list. */
Py_ssize_t rows_header(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *pos);
/* Count the row list and its rows (maps) as the term decoder does: 0, or -1 with Fallback set. A LIST_EXT
 * of no rows (not NIL_EXT, which is `empty`) counts its NIL tail as a term, as decode_value does. Each
 * row counts its keys and values (2 * pairs) when its map header is read. */
static inline int count_rows(Ctx *ctx, Py_ssize_t rows, int empty) {
    return count_terms(ctx, 1 + (rows ? rows : !empty));
}
/* The pairs of the map at *pos, moved past its header; -1 when it is not a map. */
Py_ssize_t map_header(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *pos);

/* ------------------------------------------------------------ entry points */

PyObject *sp_decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_decode_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_decode_columns(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_decode_typed(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_copy(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *sp_text_offsets(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* The buffer at args[0], offset args[1] and options args[2] that every decoder
 * takes; 0, or -1 with an error set (and no buffer held). */
int decoder_args(State *st, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t min, Py_ssize_t max,
                 const char *name, Py_buffer *view, Py_ssize_t *pos, CodecOptions **o);

#endif
