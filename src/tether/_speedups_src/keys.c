/* The key-safety rule of tether/_etf/keys.py, for the C decoders.
 *
 * A map key must be hashable (lists, maps and sets inside it are frozen by
 * the Python freeze()), and at most st->max_same_hash keys of one map may
 * share a Python hash value: int, float, tuple and frozen-container hashes
 * are chosen by whoever writes the keys, and equal hashes make every dict
 * insert walk all the earlier ones. Keys whose hash the peer cannot choose
 * (str, Atom, bytes, bool, None, ints below 2**60) are not counted, so maps
 * keyed by atoms cost one type check per key.
 *
 * Whatever the rule refuses raises Fallback: the Python decoder applies the
 * same rule and reports it with the key's path.
 */
#include "common.h"

void counts_release(HashCounts *c) {
    PyMem_Free(c->slots);
    c->slots = NULL;
    c->cap = c->used = 0;
}

static int counts_grow(const State *st, HashCounts *c) {
    Py_ssize_t ncap = c->cap ? c->cap * 2 : 16;
    HashCount *ns = PyMem_Calloc((size_t)ncap, sizeof(HashCount));
    if (!ns) return -1;
    for (Py_ssize_t i = 0; i < c->cap; i++) {
        if (!c->slots[i].n) continue;
        Py_ssize_t j = (Py_ssize_t)(keyed_mix(st, (uint64_t)c->slots[i].hash) & (uint64_t)(ncap - 1));
        while (ns[j].n) j = (j + 1) & (ncap - 1);
        ns[j] = c->slots[i];
    }
    PyMem_Free(c->slots);
    c->slots = ns;
    c->cap = ncap;
    return 0;
}

/* Count one more key with hash h: 0, 1 when that makes too many, -1 when out of memory. */
static int counts_add(const State *st, HashCounts *c, Py_hash_t h) {
    if (c->used * 2 >= c->cap && counts_grow(st, c) < 0) return -1;
    Py_ssize_t j = (Py_ssize_t)(keyed_mix(st, (uint64_t)h) & (uint64_t)(c->cap - 1));
    while (c->slots[j].n && c->slots[j].hash != h) j = (j + 1) & (c->cap - 1);
    if (!c->slots[j].n) {
        c->slots[j].hash = h;
        c->used++;
    }
    return ++c->slots[j].n > st->max_same_hash;
}

/* Whether a tuple key nests tuples at most MAX_KEY_DEPTH deep (keys.py's): CPython hashes a tuple by
 * hashing its items, recursively, and a key a million tuples deep crashed the interpreter. Walked with a
 * stack of its own; a flat tuple costs one pass over its items. */
#define MAX_KEY_DEPTH 10000
typedef struct { PyObject *tuple; Py_ssize_t next; } KeyLevel;

static int tuple_depth_ok(PyObject *key) {
    Py_ssize_t n = PyTuple_GET_SIZE(key), i = 0;
    while (i < n && !PyTuple_Check(PyTuple_GET_ITEM(key, i))) i++;
    if (i == n) return 1;  /* flat, the common case: no stack */
    KeyLevel *at = PyMem_Malloc(MAX_KEY_DEPTH * sizeof(KeyLevel));
    if (!at) return 0;  /* the Python decoder checks it instead */
    int depth = 0, ok = 1;
    at[0] = (KeyLevel){key, i};
    while (depth >= 0 && ok) {
        KeyLevel *l = &at[depth];
        if (l->next >= PyTuple_GET_SIZE(l->tuple)) { depth--; continue; }
        PyObject *item = PyTuple_GET_ITEM(l->tuple, l->next++);
        if (!PyTuple_Check(item)) continue;
        if (++depth >= MAX_KEY_DEPTH) ok = 0;
        else at[depth] = (KeyLevel){item, 0};
    }
    PyMem_Free(at);
    return ok;
}

PyObject *counted_key(State *st, HashCounts *c, PyObject *key) {
    if (PyMemoryView_Check(key)) {
        /* A large binary decoded as a view: as a key it is its bytes, owned, whatever buffer it viewed (a view
         * of a writable one cannot even be hashed), as keys.py's freeze makes them. */
        PyObject *owned = PyBytes_FromObject(key);
        Py_SETREF(key, owned);
        if (!key) goto fallback;
    }
    if (PyTuple_Check(key) && !tuple_depth_ok(key)) goto fallback;  /* Python names it */
    Py_hash_t h = PyObject_Hash(key);
    if (h == -1) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) goto fallback;
        PyErr_Clear();  /* lists, maps and sets inside the key: freeze them */
        PyObject *frozen = PyObject_CallOneArg(st->freeze, key);
        Py_SETREF(key, frozen);
        if (!key || (h = PyObject_Hash(key)) == -1) goto fallback;
    }
    if (counts_add(st, c, h) == 0) return key;
fallback:
    Py_XDECREF(key);
    set_fallback(st);
    return NULL;
}
