/* The offsets of an Arrow string column, checked in one pass: text_offsets.
 *
 * pyarrow's full validation checks a string column's UTF-8 value by value,
 * about 3 ns a value however short: 3 ms of a 9 ms DataFrame round trip at a
 * million rows. The same guarantee in two passes: this one checks that the
 * offsets rise within the data and that none of them splits a character
 * (lands on a continuation byte, 10xxxxxx), and one UTF-8 check of the whole
 * range they cover (pyarrow's, on one value) does the rest. Text cut only
 * between characters is valid piece by piece when it is valid whole.
 */
#include "common.h"

/* The first offset (from 0) that breaks the rules, or -1 when all hold. Loads go through memcpy: a
 * buffer pyarrow reads in place need not be aligned for its integers. */
#define CHECK_OFFSETS(T)                                                                             \
    static inline int64_t at_##T(const char *o, Py_ssize_t i) {                                      \
        T v;                                                                                         \
        memcpy(&v, o + i * (Py_ssize_t)sizeof(T), sizeof(T));                                        \
        return (int64_t)v;                                                                           \
    }                                                                                                \
    static Py_ssize_t check_##T(const char *o, Py_ssize_t n, const unsigned char *d, Py_ssize_t size) { \
        int64_t end = at_##T(o, n), prev = at_##T(o, 0);                                             \
        if (prev < 0) return 0;                                                                      \
        if (end > (int64_t)size) return n;                                                           \
        for (Py_ssize_t i = 0; i < n; i++) {                                                         \
            int64_t next = at_##T(o, i + 1);                                                         \
            if (next < prev) return i + 1;                                                           \
            if (prev < end && (d[prev] & 0xC0) == 0x80) return i;                                    \
            prev = next;                                                                             \
        }                                                                                            \
        return -1;                                                                                   \
    }
CHECK_OFFSETS(int32_t)
CHECK_OFFSETS(int64_t)

/* text_offsets(offsets, data, start, length, wide) -> -1, or the index (from start) of the first bad offset.
 *
 * Offsets[start : start + length + 1] are read as int64 when wide, else int32;
 * an offsets buffer too short for them answers 0, as a bad first offset. */
PyObject *sp_text_offsets(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "text_offsets() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t start = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    Py_ssize_t n = PyNumber_AsSsize_t(args[3], PyExc_OverflowError);
    int wide = PyObject_IsTrue(args[4]);
    if ((start == -1 || n == -1 || wide < 0) && PyErr_Occurred()) return NULL;
    Py_buffer ob, db;
    if (PyObject_GetBuffer(args[0], &ob, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &db, PyBUF_SIMPLE) < 0) { PyBuffer_Release(&ob); return NULL; }
    Py_ssize_t width = wide ? 8 : 4, bad = 0;
    if (start >= 0 && n >= 0 && start <= ob.len / width && n < ob.len / width - start) {
        const char *first = (const char *)ob.buf + start * width;
        const unsigned char *d = (const unsigned char *)db.buf;
        Py_BEGIN_ALLOW_THREADS
        bad = wide ? check_int64_t(first, n, d, db.len) : check_int32_t(first, n, d, db.len);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&ob);
    PyBuffer_Release(&db);
    return PyLong_FromSsize_t(bad);
}
