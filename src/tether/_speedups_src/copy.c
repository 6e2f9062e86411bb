/* Bulk copy for frame payloads: copy.
 *
 * glibc's memcpy (rep movsb) runs 2-3x slower when source and destination
 * differ in alignment modulo 64, which is the normal case for a bytes object
 * (data at 48 mod 64) and a NumPy array. On CPUs with AVX2 this aligns the
 * destination and streams with non-temporal stores, so the copy runs at
 * memory bandwidth whatever the relative alignment; elsewhere it is memcpy.
 */
#include "common.h"

/* Copy up to the destination's next 64-byte boundary; the streaming loop
 * needs an aligned destination and leaves a tail for memcpy. */
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
PyObject *sp_copy(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "copy() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_buffer d, s;
    if (PyObject_GetBuffer(args[0], &d, PyBUF_WRITABLE) < 0) {
        PyErr_Format(PyExc_TypeError, "copy() argument 1 must be read-write bytes-like object, not %.50s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    Py_ssize_t off = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (off == -1 && PyErr_Occurred()) { PyBuffer_Release(&d); return NULL; }
    if (PyObject_GetBuffer(args[2], &s, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&d);
        PyErr_Format(PyExc_TypeError, "copy() argument 3 must be bytes-like object, not %.50s",
                     Py_TYPE(args[2])->tp_name);
        return NULL;
    }
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
