/* A list of maps decoded column by column: decode_columns.
 *
 * Every map's values are appended to one Python list per key, so no dict is
 * built per row. Anything but a proper list of maps with distinct, hashable
 * keys raises Fallback, and the caller decodes the value as a whole.
 */
#include "common.h"

Py_ssize_t rows_header(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *pos) {
    if (*pos >= end) return -1;
    if (buf[*pos] == NIL_EXT) { (*pos)++; return 0; }
    if (buf[*pos] != LIST_EXT || end - *pos < 5) return -1;
    Py_ssize_t rows = (Py_ssize_t)be32(buf + *pos + 1);
    *pos += 5;
    return rows > end - *pos ? -1 : rows;
}

Py_ssize_t map_header(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *pos) {
    if (end - *pos < 5 || buf[*pos] != MAP_EXT) return -1;
    Py_ssize_t pairs = (Py_ssize_t)be32(buf + *pos + 1);
    *pos += 5;
    return 2 * pairs > end - *pos ? -1 : pairs;
}

typedef struct {
    PyObject *index;    /* key -> column number */
    PyObject *keys;     /* in first-seen order */
    PyObject *columns;  /* one list per key */
    HashCounts counts;  /* the key-safety rule, over the index's keys */
} Table;

/* The column of key (borrowed) in row `row`, made (padded with None) when key is new;
 * NULL with Fallback for a key this row already had, or an unhashable one. */
static PyObject *column_for(State *st, Table *t, PyObject *key, Py_ssize_t row) {
    PyObject *col_no = PyDict_GetItemWithError(t->index, key);
    if (col_no) {
        PyObject *col = PyList_GET_ITEM(t->columns, PyLong_AsSsize_t(col_no));
        if (PyList_GET_SIZE(col) != row) { PyErr_SetString(st->fallback, "duplicate key"); return NULL; }
        return col;
    }
    if (PyErr_Occurred()) { PyErr_Clear(); PyErr_SetString(st->fallback, "unhashable key"); return NULL; }
    PyObject *counted = safe_key(st, &t->counts, Py_NewRef(key));  /* a new column: bounded like a map key */
    if (!counted) return NULL;
    Py_DECREF(counted);  /* hashable already, so the key itself */
    PyObject *col = PyList_New(row);
    if (!col) return NULL;
    for (Py_ssize_t r = 0; r < row; r++) PyList_SET_ITEM(col, r, Py_NewRef(Py_None));
    PyObject *no = PyLong_FromSsize_t(PyList_GET_SIZE(t->columns));
    int rc = no ? PyDict_SetItem(t->index, key, no) : -1;
    Py_XDECREF(no);
    if (rc < 0 || PyList_Append(t->columns, col) < 0 || PyList_Append(t->keys, key) < 0) rc = -1;
    Py_DECREF(col);  /* t->columns holds it */
    return rc < 0 ? NULL : col;
}

/* Append the values of the map at *pos (row number `row`) to their columns; -1 with an error set. */
static int read_row(Ctx *ctx, Table *t, Py_ssize_t *pos, Py_ssize_t row) {
    Py_ssize_t pairs = map_header(ctx->buf, ctx->end, pos);
    if (pairs < 0) { PyErr_SetString(ctx->st->fallback, "not a map"); return -1; }
    if (count_terms(ctx, 2 * pairs) < 0) return -1;  /* its keys and values; decode_value counts inside them */
    for (Py_ssize_t i = 0; i < pairs; i++) {
        PyObject *key = decode_value(ctx, pos);
        if (!key) return -1;
        PyObject *value = decode_value(ctx, pos);
        PyObject *col = value ? column_for(ctx->st, t, key, row) : NULL;
        int rc = col ? PyList_Append(col, value) : -1;
        Py_DECREF(key);
        Py_XDECREF(value);
        if (rc < 0) return -1;
    }
    /* pad the columns this row did not mention */
    for (Py_ssize_t c = 0; c < PyList_GET_SIZE(t->columns); c++) {
        PyObject *col = PyList_GET_ITEM(t->columns, c);
        if (PyList_GET_SIZE(col) == row && PyList_Append(col, Py_None) < 0) return -1;
    }
    return 0;
}

/* decode_columns(buf, pos, options) -> (keys, columns, rows, end) for the list of maps (or []) at pos.
 * Keys missing from a row, or first seen after it, get None there. */
PyObject *sp_decode_columns(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = module_state(module);
    Py_buffer view;
    Py_ssize_t pos, rows = 0, nrows = 0;
    CodecOptions *o;
    if (decoder_args(st, args, nargs, 3, 3, "decode_columns", &view, &pos, &o) < 0) return NULL;
    Ctx ctx;
    ctx_init(&ctx, st, o, &view, NULL);
    const unsigned char *buf = view.buf;
    const Py_ssize_t end = view.len;
    Table t = {PyDict_New(), PyList_New(0), PyList_New(0), {NULL, 0, 0}};
    PyObject *result = NULL;
    int gc_was_enabled = PyGC_Disable(); /* see sp_decode */
    if (!t.index || !t.keys || !t.columns) goto cleanup;
    int empty = pos < end && buf[pos] == NIL_EXT;
    if ((rows = rows_header(buf, end, &pos)) < 0) goto fallback;
    if (count_rows(&ctx, rows, empty) < 0) goto cleanup;
    if (!empty) {
        for (nrows = 0; nrows < rows; nrows++)
            if (read_row(&ctx, &t, &pos, nrows) < 0) goto cleanup;
        if (pos >= end || buf[pos] != NIL_EXT) goto fallback; /* improper list of rows */
        pos++;
    }
    result = Py_BuildValue("(OOnn)", t.keys, t.columns, nrows, pos);
    goto cleanup;
fallback:
    set_fallback(st);
cleanup:
    if (gc_was_enabled) PyGC_Enable();
    Py_XDECREF(t.index);
    Py_XDECREF(t.keys);
    Py_XDECREF(t.columns);
    counts_free(&t.counts);
    ctx_free(&ctx);
    PyBuffer_Release(&view);
    return result;
}
