/* tether._speedups: the module, its state, and the options every codec call takes.
 *
 * The codecs' jobs live in their own files (see common.h). This file holds
 * what they share at run time: the per-module state (Fallback, the Python
 * types configure() names, the atom table), the CodecOptions type that
 * parses one tether._etf.Options once, and TAGS, built from tags.h.
 */
#include "common.h"
#include "metrics.h"

State *module_state(PyObject *module) { return (State *)PyModule_GetState(module); }

void set_fallback(State *st) {
    if (!PyErr_Occurred() || !PyErr_ExceptionMatches(st->fallback)) {
        PyErr_Clear();
        PyErr_SetString(st->fallback, "fallback");
    }
}

/* ------------------------------------------------------------------ CodecOptions */

static int parse_mode(const char *name, const char *value, const char *const *modes, int *out) {
    for (int i = 0; modes[i]; i++)
        if (strcmp(value, modes[i]) == 0) { *out = i; return 0; }
    PyErr_Format(PyExc_ValueError, "CodecOptions: invalid %s '%s'", name, value);
    return -1;
}

/* The string options and none_atom, checked and stored. */
static int options_set_text(CodecOptions *self, const char *binaries, const char *charlists, int warn,
                            const char *atoms, PyObject *none_atom) {
    static const char *const bin_modes[] = {"bytes", "str", "tagged", NULL};  /* BIN_* order */
    static const char *const char_modes[] = {"list", "str", NULL};
    static const char *const atom_modes[] = {"atom", "str", NULL};
    int chars_str;
    if (parse_mode("binaries", binaries, bin_modes, &self->binmode) < 0
        || parse_mode("charlists", charlists, char_modes, &chars_str) < 0
        || parse_mode("atoms", atoms, atom_modes, &self->atoms_str) < 0)
        return -1;
    self->chars = chars_str ? CHARS_STR : warn ? CHARS_LIST_WARN : CHARS_LIST;
    if (none_atom == Py_None) return 0;
    if (!PyUnicode_Check(none_atom)) {
        PyErr_SetString(PyExc_TypeError, "CodecOptions: none_atom must be a str or None");
        return -1;
    }
    self->none_atom = Py_NewRef(none_atom);
    /* Names that cannot be UTF-8 (lone surrogates) are compared as decoded text instead. */
    self->none_utf8 = PyUnicode_AsUTF8AndSize(none_atom, &self->none_len);
    if (!self->none_utf8) PyErr_Clear();
    return 0;
}

static PyObject *options_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"binaries", "charlists", "warn_charlists", "atoms", "none_atom", "max_depth",
                             "max_atoms", "max_terms", "struct_hook", "views", "minor_version", "plain", NULL};
    const char *binaries = "bytes", *charlists = "list", *atoms = "atom";
    int warn = 1, minor = 2, plain = 0;
    PyObject *none_atom = Py_None, *hook = Py_None;
    Py_ssize_t max_depth = -1, max_atoms = -1, max_terms = -1, views = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$sspsOnnnOnip:CodecOptions", kwlist, &binaries, &charlists,
                                     &warn, &atoms, &none_atom, &max_depth, &max_atoms, &max_terms, &hook, &views,
                                     &minor, &plain))
        return NULL;
    if (max_depth < 0 || max_atoms < 0 || max_terms < 0) {
        PyErr_SetString(PyExc_ValueError, "CodecOptions: max_depth, max_atoms and max_terms are required, >= 0");
        return NULL;
    }
    if (hook != Py_None && !PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_TypeError, "CodecOptions: struct_hook must be callable or None");
        return NULL;
    }
    CodecOptions *self = (CodecOptions *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    if (options_set_text(self, binaries, charlists, warn, atoms, none_atom) < 0) { Py_DECREF(self); return NULL; }
    self->max_depth = max_depth;
    self->max_atoms = max_atoms;
    self->max_terms = max_terms;
    self->struct_hook = hook == Py_None ? NULL : Py_NewRef(hook);
    self->views = views;
    self->minor = minor;
    self->plain = plain;
    return (PyObject *)self;
}

static void options_dealloc(CodecOptions *self) {
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->none_atom);
    Py_XDECREF(self->struct_hook);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyType_Slot options_slots[] = {
    {Py_tp_new, options_new},
    {Py_tp_dealloc, options_dealloc},
    {Py_tp_doc, "Options for decode/decode_columns/decode_typed/encode, parsed once (keywords only)."},
    {0, NULL},
};

static PyType_Spec options_spec = {
    "tether._speedups.CodecOptions", sizeof(CodecOptions), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    options_slots,
};

CodecOptions *codec_options(State *st, PyObject *arg) {
    if (Py_IS_TYPE(arg, (PyTypeObject *)st->options_type)) return (CodecOptions *)arg;
    PyErr_Format(PyExc_TypeError, "expected a CodecOptions, got %.50s", Py_TYPE(arg)->tp_name);
    return NULL;
}

int decoder_args(State *st, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t min, Py_ssize_t max,
                 const char *name, Py_buffer *view, Py_ssize_t *pos, CodecOptions **o) {
    if (nargs < min || nargs > max) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd to %zd arguments (%zd given)", name, min, max, nargs);
        return -1;
    }
    if (!st->atom_type) {
        PyErr_SetString(PyExc_RuntimeError, "tether._speedups: configure() was not called");
        return -1;
    }
    *pos = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (*pos == -1 && PyErr_Occurred()) return -1;
    if (!(*o = codec_options(st, args[2]))) return -1;
    if (PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "%s() argument 1 must be bytes-like object, not %.50s", name,
                     Py_TYPE(args[0])->tp_name);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ module */

/* configure(atom_type, make_improper, freeze, max_same_hash, seed): the Python types and helpers
 * the codecs build with, and the key-safety rule's bound and per-process seed (tether/_etf/keys.py). */
static PyObject *configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    State *st = module_state(module);
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "configure() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t max_same_hash = PyLong_AsSsize_t(args[3]);
    if (max_same_hash == -1 && PyErr_Occurred()) return NULL;
    unsigned long long seed = PyLong_AsUnsignedLongLongMask(args[4]);
    if (seed == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    Py_XSETREF(st->atom_type, Py_NewRef(args[0]));
    PyDict_Clear(st->atom_intern);  /* its values are instances of the old type */
    Py_XSETREF(st->make_improper, Py_NewRef(args[1]));
    Py_XSETREF(st->freeze, Py_NewRef(args[2]));
    st->max_same_hash = max_same_hash;
    st->seed = (uint64_t)seed;
    keys_clear(st);  /* slots are placed by the old seed's hash */
    Py_RETURN_NONE;
}

static PyObject *tag_table(void) {
    PyObject *tags = PyDict_New();
    if (!tags) return NULL;
#define ETF_TAG_ADD(name, value)                                               \
    {                                                                          \
        PyObject *v = PyLong_FromLong(name);                                   \
        if (!v || PyDict_SetItemString(tags, #name, v) < 0) {                  \
            Py_XDECREF(v);                                                     \
            Py_DECREF(tags);                                                   \
            return NULL;                                                       \
        }                                                                      \
        Py_DECREF(v);                                                          \
    }
    ETF_TAGS(ETF_TAG_ADD)
#undef ETF_TAG_ADD
    return tags;
}

static int module_exec(PyObject *m) {
    State *st = module_state(m);
    if (!(st->struct_key = PyUnicode_InternFromString("__struct__"))) return -1;
    if (!(st->atom_intern = PyDict_New())) return -1;
    st->keys = PyMem_Calloc((size_t)1 << KEY_CACHE_BITS, sizeof(KeySlot));
    if (!st->keys) { PyErr_NoMemory(); return -1; }
    st->fallback = PyErr_NewException("tether._speedups.Fallback", NULL, NULL);
    if (!st->fallback || PyModule_AddObjectRef(m, "Fallback", st->fallback) < 0) return -1;
    st->options_type = PyType_FromModuleAndSpec(m, &options_spec, NULL);
    if (!st->options_type || PyModule_AddObjectRef(m, "CodecOptions", st->options_type) < 0) return -1;
    if (PyModule_AddIntConstant(m, "API", SPEEDUPS_API) < 0) return -1;
    if (metrics_add_type(m) < 0) return -1;  /* tether.metrics' counters (metrics.c) */
    PyObject *tags = tag_table();
    if (!tags) return -1;
    int rc = PyModule_AddObjectRef(m, "TAGS", tags);
    Py_DECREF(tags);
    return rc;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
    State *st = module_state(m);
    Py_VISIT(st->fallback);
    Py_VISIT(st->atom_type);
    Py_VISIT(st->make_improper);
    Py_VISIT(st->freeze);
    Py_VISIT(st->struct_key);
    Py_VISIT(st->atom_intern);
    Py_VISIT(st->options_type);
    return 0;
}

static int module_clear(PyObject *m) {
    State *st = module_state(m);
    Py_CLEAR(st->fallback);
    Py_CLEAR(st->atom_type);
    Py_CLEAR(st->make_improper);
    Py_CLEAR(st->freeze);
    Py_CLEAR(st->struct_key);
    Py_CLEAR(st->atom_intern);
    Py_CLEAR(st->options_type);
    keys_clear(st);
    return 0;
}

static void module_free(void *m) {
    module_clear((PyObject *)m);
    State *st = module_state((PyObject *)m);
    PyMem_Free(st->keys);
    st->keys = NULL;
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))sp_decode, METH_FASTCALL,
     "decode(buf, pos, options, view_base=None) -> (value, end); raises Fallback when Python must decode."},
    {"decode_whole", (PyCFunction)(void (*)(void))sp_decode_whole, METH_FASTCALL,
     "decode_whole(buf, options, view_base=None) -> value for exactly one uncompressed term; else Fallback."},
    {"decode_columns", (PyCFunction)(void (*)(void))sp_decode_columns, METH_FASTCALL,
     "decode_columns(buf, pos, options) -> (keys, columns, rows, end) for a list of maps."},
    {"decode_typed", (PyCFunction)(void (*)(void))sp_decode_typed, METH_FASTCALL,
     "decode_typed(buf, pos, options) -> (keys, specs, rows, end): a list of maps as Arrow-layout buffers."},
    {"encode", (PyCFunction)(void (*)(void))sp_encode, METH_FASTCALL,
     "encode(term, options, tagged_bytes) -> bytes; raises Fallback for anything but exact builtin types."},
    {"copy", (PyCFunction)(void (*)(void))sp_copy, METH_FASTCALL,
     "copy(dest, pos, src): copy a buffer into another at an offset, fast for any relative alignment."},
    {"text_offsets", (PyCFunction)(void (*)(void))sp_text_offsets, METH_FASTCALL,
     "text_offsets(offsets, data, start, length, wide) -> -1, or the first offset that falls or splits a character."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(atom_type, make_improper, freeze, max_same_hash, seed): types, helpers and the key-safety rule."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_speedups",
    .m_doc = "tether's native fast paths: the ETF codec, column decoders, a bulk copy and the metrics counters.",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModuleDef_Init(&module_def); }
