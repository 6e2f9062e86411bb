/* Fast path of the ETF encoder: encode.
 *
 * Exact builtin types only: dict, list, tuple, str, bytes, bytearray (untagged
 * only), int (up to 64 bits), finite float, bool, None and tether.Atom. Anything else
 * raises Fallback and tether/_etf encodes the whole term (struct mappings,
 * big integers, paths in errors). Both write the same bytes, tested.
 */
#include "common.h"

#include <math.h>

#define SMALL_MAX 255      /* one-byte lengths and SMALL_INTEGER_EXT values */
#define STRING_MAX 65535   /* STRING_EXT has a 16-bit length */

enum { E_LIST, E_TUPLE, E_DICT };
typedef struct {
    int kind;
    PyObject *obj;        /* borrowed: kept alive by its parent */
    Py_ssize_t pos;       /* next index, or PyDict_Next position */
    PyObject *pending;    /* borrowed dict value still to write */
} EFrame;

/* What put_value reads for every value, passed by value so that it stays in registers. */
typedef struct {
    PyTypeObject *atom_type;
    PyObject *none_atom;  /* or NULL */
    int minor;
    int tagged;           /* bytes as BIT_BINARY_EXT with 8 bits used in the last byte */
    int plain;            /* no atoms: Python refuses them, with the path */
} Style;

/* Outcome of writing one value; W_OPENED: a container with items, whose header is written. */
enum { W_ERROR = -1, W_DONE = 0, W_FALLBACK = 1, W_OPENED = 2 };

static inline int out_byte(Out *o, unsigned char b) { return out_put(o, &b, 1); }

static inline int out_tag32(Out *o, unsigned char tag, uint32_t v) {
    unsigned char b[5] = {tag, (unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    return out_put(o, b, 5);
}

/* W_DONE, W_FALLBACK for an atom Python must report (too long, lone surrogates), or W_ERROR. */
static int put_atom(Out *o, PyObject *name, int minor) {
    Py_ssize_t chars = PyUnicode_GET_LENGTH(name);
    if (chars > SMALL_MAX) return W_FALLBACK;
    if (minor < 2 && PyUnicode_KIND(name) == PyUnicode_1BYTE_KIND) {  /* Latin-1 text: ATOM_EXT */
        unsigned char h[3] = {ATOM_EXT, 0, (unsigned char)chars};
        if (out_put(o, h, 3) < 0) return W_ERROR;
        return out_put(o, PyUnicode_1BYTE_DATA(name), chars) < 0 ? W_ERROR : W_DONE;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(name, &n);
    if (!u) { PyErr_Clear(); return W_FALLBACK; }
    if (n <= SMALL_MAX) {
        unsigned char h[2] = {SMALL_ATOM_UTF8_EXT, (unsigned char)n};
        if (out_put(o, h, 2) < 0) return W_ERROR;
    } else {
        unsigned char h[3] = {ATOM_UTF8_EXT, (unsigned char)(n >> 8), (unsigned char)n};
        if (out_put(o, h, 3) < 0) return W_ERROR;
    }
    return out_put(o, u, n) < 0 ? W_ERROR : W_DONE;
}

static int put_int(Out *o, PyObject *value) {
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow) return W_FALLBACK;  /* beyond 64 bits: Python writes the big integer */
    if (v == -1 && PyErr_Occurred()) return W_ERROR;
    if (v >= 0 && v <= SMALL_MAX) {
        unsigned char b[2] = {SMALL_INTEGER_EXT, (unsigned char)v};
        return out_put(o, b, 2) < 0 ? W_ERROR : W_DONE;
    }
    if (v >= INT32_MIN && v <= INT32_MAX) return out_tag32(o, INTEGER_EXT, (uint32_t)(int32_t)v) < 0 ? W_ERROR : W_DONE;
    unsigned long long mag = v < 0 ? (unsigned long long)(-(v + 1)) + 1 : (unsigned long long)v;
    unsigned char b[11] = {SMALL_BIG_EXT, 0, v < 0};
    int n = 0;
    while (mag) { b[3 + n++] = (unsigned char)(mag & 0xFF); mag >>= 8; }
    b[1] = (unsigned char)n;
    return out_put(o, b, 3 + n) < 0 ? W_ERROR : W_DONE;
}

static int put_float(Out *o, double d, int minor) {
    if (!isfinite(d) || minor == 0) return W_FALLBACK;  /* Python writes nan atoms and FLOAT_EXT text */
    uint64_t bits;
    memcpy(&bits, &d, 8);
    unsigned char b[9] = {NEW_FLOAT_EXT};
    for (int i = 0; i < 8; i++) b[1 + i] = (unsigned char)(bits >> (56 - 8 * i));
    return out_put(o, b, 9) < 0 ? W_ERROR : W_DONE;
}

static int put_bool(Out *o, int on, int minor) {
    static const unsigned char tr[] = {SMALL_ATOM_UTF8_EXT, 4, 't', 'r', 'u', 'e'};
    static const unsigned char fa[] = {SMALL_ATOM_UTF8_EXT, 5, 'f', 'a', 'l', 's', 'e'};
    static const unsigned char tr1[] = {ATOM_EXT, 0, 4, 't', 'r', 'u', 'e'};
    static const unsigned char fa1[] = {ATOM_EXT, 0, 5, 'f', 'a', 'l', 's', 'e'};
    int rc = on ? (minor < 2 ? out_put(o, tr1, 7) : out_put(o, tr, 6))
                : (minor < 2 ? out_put(o, fa1, 8) : out_put(o, fa, 7));
    return rc < 0 ? W_ERROR : W_DONE;
}

static int put_bytes(Out *o, const char *d, Py_ssize_t n, int tagged) {
    if (n > 0xFFFFFFFFLL) return W_FALLBACK;
    if (tagged) {
        if (out_tag32(o, BIT_BINARY_EXT, (uint32_t)n) < 0 || out_byte(o, n ? 8 : 0) < 0) return W_ERROR;
    } else if (out_tag32(o, BINARY_EXT, (uint32_t)n) < 0) {
        return W_ERROR;
    }
    return out_put(o, d, n) < 0 ? W_ERROR : W_DONE;
}

/* A list of ints 0..255 is STRING_EXT, as term_to_binary writes it: W_DONE when written, W_FALLBACK when not such a list. */
static int put_string(Out *o, PyObject *list, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyList_GET_ITEM(list, i);
        if (!PyLong_CheckExact(x)) return W_FALLBACK;
        long v = PyLong_AsLong(x);
        if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); return W_FALLBACK; }
        if (v < 0 || v > SMALL_MAX) return W_FALLBACK;
    }
    unsigned char h[3] = {STRING_EXT, (unsigned char)(n >> 8), (unsigned char)n};
    if (out_put(o, h, 3) < 0 || out_reserve(o, n) < 0) return W_ERROR;
    for (Py_ssize_t i = 0; i < n; i++) o->p[o->len++] = (char)PyLong_AsLong(PyList_GET_ITEM(list, i));
    return W_DONE;
}

/* Write the header of a dict, list or tuple: W_OPENED when its items follow. */
static int put_container(Out *o, PyObject *value, PyTypeObject *t) {
    Py_ssize_t n = t == &PyDict_Type ? PyDict_GET_SIZE(value) : Py_SIZE(value);
    if (t == &PyList_Type) {
        if (n == 0) return out_byte(o, NIL_EXT) < 0 ? W_ERROR : W_DONE;
        if (n <= STRING_MAX) {
            int rc = put_string(o, value, n);
            if (rc != W_FALLBACK) return rc;
        }
        return out_tag32(o, LIST_EXT, (uint32_t)n) < 0 ? W_ERROR : W_OPENED;
    }
    if (t == &PyTuple_Type) {
        if (n <= SMALL_MAX) {
            unsigned char h[2] = {SMALL_TUPLE_EXT, (unsigned char)n};
            if (out_put(o, h, 2) < 0) return W_ERROR;
        } else if (out_tag32(o, LARGE_TUPLE_EXT, (uint32_t)n) < 0) {
            return W_ERROR;
        }
    } else if (out_tag32(o, MAP_EXT, (uint32_t)n) < 0) {
        return W_ERROR;
    }
    return n ? W_OPENED : W_DONE;
}

/* Write one value: a scalar whole, a container's header. */
static inline int put_value(Out *o, PyObject *value, const Style s) {
    PyTypeObject *t = Py_TYPE(value);
    if (t == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(value, &n);
        if (!u) { PyErr_Clear(); return W_FALLBACK; }  /* lone surrogates: Python reports */
        if (n > 0xFFFFFFFFLL) return W_FALLBACK;
        return (out_tag32(o, BINARY_EXT, (uint32_t)n) < 0 || out_put(o, u, n) < 0) ? W_ERROR : W_DONE;
    }
    if (t == s.atom_type) return s.plain ? W_FALLBACK : put_atom(o, value, s.minor);
    if (t == &PyLong_Type) return put_int(o, value);
    if (t == &PyFloat_Type) return put_float(o, PyFloat_AS_DOUBLE(value), s.minor);
    if (value == Py_True || value == Py_False) return put_bool(o, value == Py_True, s.minor);
    if (value == Py_None) return s.none_atom ? put_atom(o, s.none_atom, s.minor) : W_FALLBACK;
    if (t == &PyBytes_Type) return put_bytes(o, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), s.tagged);
    /* Tagged: Python writes bytearrays, counting their places among the binaries so they read back as such. */
    if (t == &PyByteArray_Type)
        return s.tagged ? W_FALLBACK : put_bytes(o, PyByteArray_AS_STRING(value), PyByteArray_GET_SIZE(value), 0);
    if (t == &PyDict_Type || t == &PyList_Type || t == &PyTuple_Type) return put_container(o, value, t);
    return W_FALLBACK;  /* struct mappings, subclasses, numpy scalars...: Python */
}

/* Make room for frame number `depth` on the stack; -1 with MemoryError set. */
static int stack_room(EFrame **stack, Py_ssize_t *cap, Py_ssize_t depth) {
    if (depth < *cap) return 0;
    Py_ssize_t ncap = *cap ? *cap * 2 : 32;
    EFrame *ns = PyMem_Realloc(*stack, (size_t)ncap * sizeof(EFrame));
    if (!ns) { PyErr_NoMemory(); return -1; }
    *stack = ns;
    *cap = ncap;
    return 0;
}

/* encode(term, options, tagged_bytes) -> bytes starting with VERSION_MAGIC */
PyObject *sp_encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = module_state(module);
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "encode() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    CodecOptions *o = codec_options(st, args[1]);
    int tagged = PyObject_IsTrue(args[2]);
    if (!o || tagged < 0) return NULL;
    const Style s = {(PyTypeObject *)st->atom_type, o->none_atom, o->minor, tagged, o->plain};
    Out out = {NULL, 0, 0};
    EFrame *stack = NULL;
    Py_ssize_t depth = 0, cap = 0;
    PyObject *value = args[0], *result = NULL;
    if (out_byte(&out, VERSION_MAGIC) < 0) goto cleanup;
    for (;;) {
        int rc = put_value(&out, value, s);
        if (rc == W_OPENED) {
            PyTypeObject *t = Py_TYPE(value);
            if (depth >= o->max_depth) goto fallback;
            if (stack_room(&stack, &cap, depth) < 0) goto cleanup;
            stack[depth++] = (EFrame){t == &PyDict_Type ? E_DICT : t == &PyList_Type ? E_LIST : E_TUPLE, value, 0, NULL};
        } else if (rc == W_FALLBACK) {
            goto fallback;
        } else if (rc == W_ERROR) {
            goto cleanup;
        }
        /* Find the next value to write, closing finished containers. */
        for (;;) {
            if (depth == 0) goto done;
            EFrame *f = &stack[depth - 1];
            if (f->kind == E_DICT) {
                if (f->pending) { value = f->pending; f->pending = NULL; break; }
                PyObject *k, *v;
                if (PyDict_Next(f->obj, &f->pos, &k, &v)) { value = k; f->pending = v; break; }
            } else if (f->pos < Py_SIZE(f->obj)) {
                value = f->kind == E_LIST ? PyList_GET_ITEM(f->obj, f->pos) : PyTuple_GET_ITEM(f->obj, f->pos);
                f->pos++;
                break;
            } else if (f->kind == E_LIST && out_byte(&out, NIL_EXT) < 0) {
                goto cleanup;
            }
            depth--;
        }
    }
done:
    result = PyBytes_FromStringAndSize(out.p, out.len);
    goto cleanup;
fallback:
    if (!PyErr_Occurred()) PyErr_SetString(st->fallback, "fallback");
cleanup:
    PyMem_Free(out.p);
    PyMem_Free(stack);
    return result;
}
