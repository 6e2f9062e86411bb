/* tether._speedups.Accumulator: tether.metrics' per-key counters, kept in C.
 *
 * Metrics are on by default, so counting one operation must cost a few
 * hundred instructions (#13: at most 3 % on a small dumps + loads round trip).
 * One call reads the clock, finds the key's slot (by the identity of its four
 * parts, strs or a frame header's int ids, when the key was seen lately; else
 * by their cached hashes) and adds to plain C counters; nothing is folded per
 * operation.
 * No Python code runs while the counters change: the only calls out (a test's
 * clock, reading the ints and buffer lengths) come before, and dropping a history entry that
 * fell off the ring comes after. Under the GIL each call is therefore atomic,
 * so threads need no lock. tether/metrics/_core.py takes the deltas (take())
 * every DRAIN_AT operations and whenever figures are read, and holds the
 * same contract in Python (PyAccumulator) for builds without this module.
 */
#include "metrics.h"

#include <limits.h>
#include <time.h>

/* The histogram of tether/metrics/_core.py (checked there): SUB_BUCKETS per power of two of ns. */
#define SUB_BUCKETS 4
#define MAX_BITS 47
#define NBUCKETS (SUB_BUCKETS * MAX_BITS - 8 + SUB_BUCKETS)
#define NKEY 4         /* op, format, compression, transport */
/* add() says when a fold is due: a second after the last take() (alerts stay prompt), or after DRAIN_AT
 * operations. Not more often: a fold runs cold Python and NumPy code, a hundred microseconds a time, which
 * every 1024 operations cost more wall time than the counting itself. */
#define DRAIN_AT (1 << 16)
#define DRAIN_NS 1000000000LL
/* What add() returns besides None, as bits: a take() is due; the operation reached set_large()'s size. */
#define FLAG_DUE 1
#define FLAG_LARGE 2
/* The entry points' contract with tether/metrics/_core.py (METRICS_API): raised whenever one's arguments or
 * their meaning change, so that Python keeps a build left over from an older tether out (it counts in Python). */
#define METRICS_API 2
/* Slots remembered by the identity of their key's parts: the entry points pass the same objects each time. */
#define NRECENT 8
/* A count runs between long stretches of other code, which evict it from the caches: what it costs is mostly
 * the cache lines it touches, so the usual path is kept straight and short, and the rest out of line (COLD). */
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define COLD __attribute__((noinline, cold))

typedef struct {
    PyObject *key[NKEY];  /* str or int id, owned */
    int size;             /* size class */
    int dirty;            /* counted since the last take() */
    Py_hash_t hash;
    long long count, bytes_in, bytes_out, nanos;
    long long hist[NBUCKETS];
    double *samples;      /* throughput (bytes per ns) of the batch being filled */
    Py_ssize_t nsamples, cap_samples;
    double *medians;      /* the medians of the batches filled since the last take() */
    Py_ssize_t nmedians, cap_medians;
} Slot;

typedef struct {
    PyObject *decision, *op;  /* owned */
    long long ns;
} Decided;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    Py_ssize_t nslots, cap_slots;
    Py_ssize_t *index;        /* open addressing by hash: slot number + 1, 0 when empty */
    Py_ssize_t cap_index;     /* a power of two, more than twice nslots */
    Decided *ring;            /* decisions since the last take(); only the newest `history` stay */
    Py_ssize_t history, ring_next, ring_len;
    Py_ssize_t batch;         /* operations per throughput median (the alert monitor's) */
    Py_ssize_t pending;       /* operations since the last take() */
    long long last_take;      /* the clock at the last take(), 0 until an add() sets it */
    int on;
    long long large;          /* operations this large are flagged (FLAG_LARGE) */
    PyObject *clock;          /* a Python clock (tests), or NULL: CLOCK_MONOTONIC, as time.perf_counter_ns */
    Py_ssize_t frame_fields[3]; /* where a frame header tuple holds its format id, compression id, raw length */
    int frame_set;
    Py_ssize_t recent[NRECENT]; /* slot numbers + 1 of keys seen lately, filled from the first; 0 when none */
    unsigned recent_next;       /* the entry a new key replaces */
} Acc;

/* The size class of the larger of bytes in and out: _core.SIZE_CLASSES. */
static int size_class(long long n) {
    return (n >= 1LL << 10) + (n >= 1LL << 16) + (n >= 1LL << 20) + (n >= 1LL << 24);
}

/* _core.bucket, for ns >= 0. */
static int bucket(long long ns) {
    if (ns <= 0) return 0;
    int bits = 64 - __builtin_clzll((unsigned long long)ns);
    if (bits <= 2) return (int)ns;
    if (bits > MAX_BITS) return NBUCKETS - 1;
    return SUB_BUCKETS * bits - 8 + (int)((ns >> (bits - 3)) & 3);
}

static COLD int python_clock(Acc *self, long long *out) {
    PyObject *r = PyObject_CallNoArgs(self->clock);
    if (!r) return -1;
    *out = PyLong_AsLongLong(r);
    Py_DECREF(r);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static inline int now_ns(Acc *self, long long *out) {
    if (UNLIKELY(self->clock != NULL)) return python_clock(self, out);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *out = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    return 0;
}

/* Sizes are read at every count: a one-digit int is read in place (the calls cost as much as the counting),
 * others by PyLong_AsLongLongAndOverflow (PyLong_AsLongLong goes through a byte array past 2**30). */
static COLD int as_ll_slow(PyObject *o, long long *out);

static inline int as_ll(PyObject *o, long long *out) {
#if PY_VERSION_HEX >= 0x030C0000
    if (LIKELY(PyLong_CheckExact(o) && PyUnstable_Long_IsCompact((PyLongObject *)o))) {
        *out = PyUnstable_Long_CompactValue((PyLongObject *)o);
        return 0;
    }
#else
    if (LIKELY(PyLong_CheckExact(o) && Py_SIZE(o) >= -1 && Py_SIZE(o) <= 1)) {
        *out = (long long)Py_SIZE(o) * (long long)((PyLongObject *)o)->ob_digit[0];
        return 0;
    }
#endif
    return as_ll_slow(o, out);
}

static COLD int as_ll_slow(PyObject *o, long long *out) {
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow) PyErr_SetString(PyExc_OverflowError, "Accumulator: an int does not fit in 64 bits");
    return overflow || (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* The ns since t0, a start() mark: a float, which costs a fraction of a two-digit int to make and read (its
 * rounding, past 2**53 ns of uptime, is a few ns), or an int from a Python clock. */
static inline int elapsed(Acc *self, PyObject *t0, long long *ns, long long *now) {
    long long start;
    if (LIKELY(PyFloat_CheckExact(t0))) start = (long long)PyFloat_AS_DOUBLE(t0);
    else if (as_ll(t0, &start) < 0) return -1;
    if (now_ns(self, now) < 0) return -1;
    *ns = *now - start;
    return 0;
}

/* The hash of a key, checking its parts' types; never -1, so that -1 can mean an error. */
static Py_hash_t key_hash(PyObject *const *key, int size) {
    Py_uhash_t h = 0x345678UL + (Py_uhash_t)size;
    for (int i = 0; i < NKEY; i++) {
        /* An exact str caches its hash: read it without a call. A subclass's __hash__ runs before any update. */
        Py_hash_t x = PyUnicode_CheckExact(key[i]) ? ((PyASCIIObject *)key[i])->hash : -1;
        if (x == -1 && !PyUnicode_Check(key[i]) && !PyLong_CheckExact(key[i])) {
            PyErr_Format(PyExc_TypeError,
                         "Accumulator: op, format, compression and transport must be str (or int ids), not %.50s",
                         Py_TYPE(key[i])->tp_name);
            return -1;
        }
        if (x == -1 && (x = PyObject_Hash(key[i])) == -1) return -1;
        h = (h ^ (Py_uhash_t)x) * 1000003UL;
    }
    return (Py_hash_t)(h >> 1);
}

/* A key part is a str or an exact int (a registered id, named when folded); neither compare runs Python code. */
static int same_part(PyObject *a, PyObject *b) {
    if (a == b) return 1;  /* the usual case: callers pass the same literals, names and small ints each time */
    if (PyUnicode_Check(a) && PyUnicode_Check(b)) return PyUnicode_Compare(a, b) == 0;
    if (PyLong_CheckExact(a) && PyLong_CheckExact(b)) return PyObject_RichCompareBool(a, b, Py_EQ) == 1;
    return 0;
}

static int same_key(const Slot *s, PyObject *const *key, int size, Py_hash_t h) {
    if (s->hash != h || s->size != size) return 0;
    for (int i = 0; i < NKEY; i++)
        if (!same_part(s->key[i], key[i])) return 0;
    return 1;
}

/* Room for one more slot: the array and, at half full, a rebuilt index twice as large. */
static int grow(Acc *self) {
    if (self->nslots == self->cap_slots) {
        Py_ssize_t cap = self->cap_slots ? self->cap_slots * 2 : 16;
        Slot *slots = PyMem_Realloc(self->slots, (size_t)cap * sizeof(Slot));
        if (!slots) { PyErr_NoMemory(); return -1; }
        self->slots = slots;
        self->cap_slots = cap;
    }
    if ((self->nslots + 1) * 2 < self->cap_index) return 0;
    Py_ssize_t cap = self->cap_index ? self->cap_index * 2 : 32;
    Py_ssize_t *index = PyMem_Calloc((size_t)cap, sizeof(Py_ssize_t));
    if (!index) { PyErr_NoMemory(); return -1; }
    size_t mask = (size_t)cap - 1;
    for (Py_ssize_t n = 0; n < self->nslots; n++) {
        size_t i = (size_t)self->slots[n].hash & mask;
        while (index[i]) i = (i + 1) & mask;
        index[i] = n + 1;
    }
    PyMem_Free(self->index);
    self->index = index;
    self->cap_index = cap;
    return 0;
}

/* The slot of a key, made on its first use; NULL with MemoryError set. */
static Slot *slot_for(Acc *self, PyObject *const *key, int size, Py_hash_t h) {
    if (self->cap_index) {
        size_t mask = (size_t)self->cap_index - 1;
        for (size_t i = (size_t)h & mask; self->index[i]; i = (i + 1) & mask) {
            Slot *s = &self->slots[self->index[i] - 1];
            if (same_key(s, key, size, h)) return s;
        }
    }
    if (grow(self) < 0) return NULL;
    size_t mask = (size_t)self->cap_index - 1, i = (size_t)h & mask;
    while (self->index[i]) i = (i + 1) & mask;
    Slot *s = &self->slots[self->nslots];
    memset(s, 0, sizeof *s);
    for (int k = 0; k < NKEY; k++) s->key[k] = Py_NewRef(key[k]);
    s->size = size;
    s->hash = h;
    self->index[i] = ++self->nslots;
    return s;
}

/* The k-th smallest of v (reordering v): Wirth's selection, so that afterwards v[0..k-1] <= v[k]. A median per
 * batch costs a few comparisons per sample this way, a fifth of sorting the batch. */
static double kth(double *v, Py_ssize_t n, Py_ssize_t k) {
    Py_ssize_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[k];
        Py_ssize_t i = lo, j = hi;
        do {
            while (v[i] < pivot) i++;
            while (pivot < v[j]) j--;
            if (i <= j) {
                double t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        } while (i <= j);
        if (j < k) lo = i;
        if (k < i) hi = j;
    }
    return v[k];
}

/* As numpy.median: the middle value, or the mean of the two middle values. Reorders v. */
static double median(double *v, Py_ssize_t n) {
    Py_ssize_t k = n / 2;
    double upper = kth(v, n, k);
    if (n % 2) return upper;
    double lower = v[0];
    for (Py_ssize_t i = 1; i < k; i++) lower = v[i] > lower ? v[i] : lower;
    return (lower + upper) / 2;
}

/* One throughput sample; a full batch becomes a median. Out of memory the sample is dropped:
 * metrics must never fail the operation they count. */
static COLD void grow_samples(Slot *s, Py_ssize_t batch, double throughput);
static COLD void batch_filled(Slot *s, Py_ssize_t batch);

static inline void add_sample(Slot *s, Py_ssize_t batch, double throughput) {
    if (UNLIKELY(s->nsamples == s->cap_samples)) {
        grow_samples(s, batch, throughput);
        return;
    }
    s->samples[s->nsamples++] = throughput;
    if (UNLIKELY(s->nsamples >= batch)) batch_filled(s, batch);
}

/* Grown as filled: a huge batch size must not allocate it all at once. */
static COLD void grow_samples(Slot *s, Py_ssize_t batch, double throughput) {
    Py_ssize_t cap = s->cap_samples ? s->cap_samples * 2 : 16;
    cap = cap < batch ? cap : batch;
    double *p = PyMem_Realloc(s->samples, (size_t)cap * sizeof(double));
    if (!p) return;
    s->samples = p;
    s->cap_samples = cap;
    s->samples[s->nsamples++] = throughput;
    if (s->nsamples >= batch) batch_filled(s, batch);
}

static COLD void batch_filled(Slot *s, Py_ssize_t batch) {
    s->nsamples = 0;
    if (s->nmedians == s->cap_medians) {
        Py_ssize_t cap = s->cap_medians ? s->cap_medians * 2 : 8;
        double *p = PyMem_Realloc(s->medians, (size_t)cap * sizeof(double));
        if (!p) return;
        s->medians = p;
        s->cap_medians = cap;
    }
    s->medians[s->nmedians++] = median(s->samples, batch);
}

/* The slot of a key: a recent one whose parts are these very objects (it owns them, so no other object can
 * have their addresses), else by hash. A small round trip's two keys stay recent, and skip hashing and probing:
 * a third of a count. */
static COLD Slot *find_slot_slow(Acc *self, PyObject *const *key, int cls);

static inline Slot *find_slot(Acc *self, PyObject *const *key, int cls) {
    for (int r = 0; r < NRECENT && self->recent[r]; r++) {
        Slot *s = &self->slots[self->recent[r] - 1];
        if (s->key[0] == key[0] && s->key[1] == key[1] && s->key[2] == key[2] && s->key[3] == key[3]
            && s->size == cls)
            return s;
    }
    return find_slot_slow(self, key, cls);
}

static COLD Slot *find_slot_slow(Acc *self, PyObject *const *key, int cls) {
    Py_hash_t h = key_hash(key, cls);
    Slot *s = h == -1 ? NULL : slot_for(self, key, cls, h);
    if (s) self->recent[self->recent_next++ % NRECENT] = s - self->slots + 1;
    return s;
}

/* Count one operation that ended at `now` (the clock); key[0] is its op. Not inlined: the three entry points
 * share one copy (measured no slower than a copy in each). */
static __attribute__((noinline)) PyObject *count(Acc *self, PyObject *const *key, long long nin, long long nout,
                                                 long long ns, PyObject *decision, long long now) {
    long long size = nin > nout ? nin : nout;
    int cls = size_class(size);
    Slot *s = find_slot(self, key, cls);
    if (UNLIKELY(!s)) return NULL;
    if (UNLIKELY(ns < 0)) ns = 0;  /* a clock that went back: count the operation as instant */
    s->dirty = 1;
    s->count++;
    s->bytes_in += nin;
    s->bytes_out += nout;
    s->nanos += ns;
    s->hist[bucket(ns)]++;
    add_sample(s, self->batch, (double)(size > 1 ? size : 1) / (double)(ns > 1 ? ns : 1));
    Decided old = {NULL, NULL, 0};
    if (decision != Py_None) {  /* dumps pass one, loads never */
        Decided *d = &self->ring[self->ring_next];
        old = *d;
        *d = (Decided){Py_NewRef(decision), Py_NewRef(key[0]), ns};
        if (++self->ring_next == self->history) self->ring_next = 0;
        if (self->ring_len < self->history) self->ring_len++;
    }
    self->pending++;
    /* Last, with the counters consistent: dropping a decision may run Python code (a finalizer). */
    Py_XDECREF(old.decision);
    Py_XDECREF(old.op);
    if (!self->last_take) self->last_take = now;
    int due = self->pending >= DRAIN_AT || now - self->last_take >= DRAIN_NS;
    int flags = (due ? FLAG_DUE : 0) | (size >= self->large ? FLAG_LARGE : 0);
    if (LIKELY(!flags)) Py_RETURN_NONE;
    return PyLong_FromLong(flags);
}

static PyObject *acc_start(Acc *self, PyObject *unused) {
    if (!self->on) Py_RETURN_NONE;
    long long now;
    if (now_ns(self, &now) < 0) return NULL;
    return PyFloat_FromDouble((double)now);  /* see elapsed() */
}

/* add(op, fmt, comp, transport, nin, nout, t0, decision) and observe(..., ns, decision). */
static PyObject *add_or_observe(Acc *self, PyObject *const *args, Py_ssize_t nargs, int since) {
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "Accumulator.%s() takes 8 arguments (%zd given)", since ? "add" : "observe",
                     nargs);
        return NULL;
    }
    long long nin, nout, ns, now;
    if (as_ll(args[4], &nin) < 0 || as_ll(args[5], &nout) < 0) return NULL;
    /* observe() reads the clock too: worker calls and stream chunks need their fold a second on as well */
    if (since ? elapsed(self, args[6], &ns, &now) < 0 : as_ll(args[6], &ns) < 0 || now_ns(self, &now) < 0)
        return NULL;
    return count(self, args, nin, nout, ns, args[7], now);
}

/* A byte count given as an int, or as the object holding the bytes (its buffer's length in bytes), which spares
 * the caller a len() call per operation. */
static COLD int nbytes_of_buffer(PyObject *o, long long *out) {
    if (PyLong_Check(o)) return as_ll(o, out);
    Py_buffer view;
    if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0) return -1;
    *out = view.len;
    PyBuffer_Release(&view);
    return 0;
}

static inline int nbytes_of(PyObject *o, long long *out) {
    if (PyBytes_CheckExact(o)) *out = PyBytes_GET_SIZE(o);
    else if (PyMemoryView_Check(o)) *out = PyMemoryView_GET_BUFFER(o)->len;
    else return nbytes_of_buffer(o, out);
    return 0;
}

/* The TypeError of an entry point called with `nargs` arguments, or with the wrong kind of `needs`. */
static COLD PyObject *bad_call(const char *name, Py_ssize_t takes, Py_ssize_t nargs, const char *needs) {
    if (nargs != takes)
        PyErr_Format(PyExc_TypeError, "Accumulator.%s() takes %zd arguments (%zd given)", name, takes, nargs);
    else
        PyErr_Format(PyExc_TypeError, "Accumulator.%s() needs %s", name, needs);
    return NULL;
}

/* add_plain(op, fmt, comp, transport, plain, t0, decision): add() for a one-step write, whose writer returned
 * plain = (frame, payload bytes): the payload bytes in, the frame's length out. */
static PyObject *acc_add_plain(Acc *self, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *plain = nargs == 7 ? args[4] : NULL;
    if (UNLIKELY(!plain || !PyTuple_Check(plain) || PyTuple_GET_SIZE(plain) < 2))
        return bad_call("add_plain", 7, nargs, "plain as a (frame, payload bytes) tuple");
    long long nin, nout, ns, now;
    if (as_ll(PyTuple_GET_ITEM(plain, 1), &nin) < 0 || nbytes_of(PyTuple_GET_ITEM(plain, 0), &nout) < 0
        || elapsed(self, args[5], &ns, &now) < 0)
        return NULL;
    return count(self, args, nin, nout, ns, args[6], now);
}

/* add_frame(op, transport, nbytes_in, header, t0): add() for a frame read, keyed by its header's ids;
 * nbytes_in is an int or the frame's buffer. */
static PyObject *acc_add_frame(Acc *self, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *header = nargs == 5 ? args[3] : NULL;
    Py_ssize_t *at = self->frame_fields;
    if (UNLIKELY(!header || !self->frame_set || !PyTuple_Check(header) || PyTuple_GET_SIZE(header) <= at[0]
                 || PyTuple_GET_SIZE(header) <= at[1] || PyTuple_GET_SIZE(header) <= at[2]))
        return bad_call("add_frame", 5, nargs, "a frame header after set_frame_fields()");
    long long nin, nout, ns, now;
    if (nbytes_of(args[2], &nin) < 0 || as_ll(PyTuple_GET_ITEM(header, at[2]), &nout) < 0
        || elapsed(self, args[4], &ns, &now) < 0)
        return NULL;
    PyObject *key[NKEY] = {args[0], PyTuple_GET_ITEM(header, at[0]), PyTuple_GET_ITEM(header, at[1]), args[1]};
    return count(self, key, nin, nout, ns, Py_None, now);
}

/* set_frame_fields(format_id, compression_id, raw_length): the header tuple's field positions (frame.Header). */
static PyObject *acc_set_frame_fields(Acc *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "Accumulator.set_frame_fields() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        Py_ssize_t v = PyNumber_AsSsize_t(args[i], PyExc_OverflowError);
        if (v == -1 && PyErr_Occurred()) return NULL;
        if (v < 0) {
            PyErr_SetString(PyExc_ValueError, "Accumulator.set_frame_fields() needs positions >= 0");
            return NULL;
        }
        self->frame_fields[i] = v;
    }
    self->frame_set = 1;
    Py_RETURN_NONE;
}

static PyObject *acc_add(Acc *self, PyObject *const *args, Py_ssize_t nargs) {
    return add_or_observe(self, args, nargs, 1);
}

static PyObject *acc_observe(Acc *self, PyObject *const *args, Py_ssize_t nargs) {
    return add_or_observe(self, args, nargs, 0);
}

/* ------------------------------------------------------------------ take() */

/* A slot's deltas, detached from the accumulator before any Python object is built: building
 * may collect garbage, run a finalizer and count an operation, which then lands in fresh deltas. */
typedef struct {
    PyObject *key[NKEY];  /* owned */
    int size;
    long long count, bytes_in, bytes_out, nanos;
    long long hist[NBUCKETS];
    double *medians;      /* owned */
    Py_ssize_t nmedians;
} Taken;

static void detach_slot(Slot *s, Taken *t) {
    for (int k = 0; k < NKEY; k++) t->key[k] = Py_NewRef(s->key[k]);
    t->size = s->size;
    t->count = s->count;
    t->bytes_in = s->bytes_in;
    t->bytes_out = s->bytes_out;
    t->nanos = s->nanos;
    memcpy(t->hist, s->hist, sizeof t->hist);
    t->medians = s->medians;
    t->nmedians = s->nmedians;
    s->count = s->bytes_in = s->bytes_out = s->nanos = 0;
    memset(s->hist, 0, sizeof s->hist);
    s->medians = NULL;
    s->nmedians = s->cap_medians = 0;
    s->dirty = 0;
}

static void free_taken(Taken *taken, Py_ssize_t n, Decided *decided, Py_ssize_t ndecided) {
    for (Py_ssize_t i = 0; i < n; i++) {
        for (int k = 0; k < NKEY; k++) Py_XDECREF(taken[i].key[k]);
        PyMem_Free(taken[i].medians);
    }
    for (Py_ssize_t i = 0; i < ndecided; i++) {
        Py_XDECREF(decided[i].decision);
        Py_XDECREF(decided[i].op);
    }
    PyMem_Free(taken);
    PyMem_Free(decided);
}

static PyObject *row_of(Taken *t) {
    PyObject *row = PyTuple_New(NKEY + 6);
    if (!row) return NULL;
    for (int k = 0; k < NKEY; k++) PyTuple_SET_ITEM(row, k, Py_NewRef(t->key[k]));
    long long values[] = {t->size, t->count, t->bytes_in, t->bytes_out, t->nanos};
    for (int k = 0; k < 5; k++) {
        PyObject *v = PyLong_FromLongLong(values[k]);
        if (!v) { Py_DECREF(row); return NULL; }
        PyTuple_SET_ITEM(row, NKEY + k, v);
    }
    PyObject *hist = PyBytes_FromStringAndSize((const char *)t->hist, sizeof t->hist);
    if (!hist) { Py_DECREF(row); return NULL; }
    PyTuple_SET_ITEM(row, NKEY + 5, hist);
    return row;
}

static PyObject *medians_of(Taken *t) {
    PyObject *list = PyList_New(t->nmedians);
    for (Py_ssize_t i = 0; list && i < t->nmedians; i++) {
        PyObject *v = PyFloat_FromDouble(t->medians[i]);
        if (!v) Py_CLEAR(list);
        else PyList_SET_ITEM(list, i, v);
    }
    return Py_BuildValue("(OOOiN)", t->key[0], t->key[1], t->key[2], t->size, list);
}

/* (rows, decided, medians) as documented on take(), from the detached deltas. */
static PyObject *build_taken(Taken *taken, Py_ssize_t n, Decided *decided, Py_ssize_t ndecided) {
    PyObject *rows = PyList_New(0), *done = PyList_New(0), *meds = PyList_New(0);
    int ok = rows && done && meds;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *row = row_of(&taken[i]);
        ok = row && PyList_Append(rows, row) == 0;
        Py_XDECREF(row);
        if (ok && taken[i].nmedians) {
            PyObject *m = medians_of(&taken[i]);
            ok = m && PyList_Append(meds, m) == 0;
            Py_XDECREF(m);
        }
    }
    for (Py_ssize_t i = 0; ok && i < ndecided; i++) {
        PyObject *item = Py_BuildValue("(OOL)", decided[i].decision, decided[i].op, decided[i].ns);
        ok = item && PyList_Append(done, item) == 0;
        Py_XDECREF(item);
    }
    PyObject *out = ok ? PyTuple_Pack(3, rows, done, meds) : NULL;
    Py_XDECREF(rows);
    Py_XDECREF(done);
    Py_XDECREF(meds);
    return out;
}

static PyObject *acc_take(Acc *self, PyObject *with_history) {
    int history = PyObject_IsTrue(with_history);
    long long now;
    if (history < 0 || now_ns(self, &now) < 0) return NULL;
    Py_ssize_t n = 0, ndecided = history ? self->ring_len : 0;
    for (Py_ssize_t i = 0; i < self->nslots; i++) n += self->slots[i].dirty;
    Taken *taken = PyMem_Calloc((size_t)n + 1, sizeof(Taken));
    Decided *decided = PyMem_Calloc((size_t)ndecided + 1, sizeof(Decided));
    if (!taken || !decided) {
        PyMem_Free(taken);
        PyMem_Free(decided);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0, j = 0; i < self->nslots; i++)
        if (self->slots[i].dirty) detach_slot(&self->slots[i], &taken[j++]);
    for (Py_ssize_t i = 0; i < ndecided; i++) {  /* oldest first; the references move */
        Py_ssize_t at = (self->ring_next - ndecided + i + self->history) % self->history;
        decided[i] = self->ring[at];
        self->ring[at] = (Decided){NULL, NULL, 0};
    }
    if (history) self->ring_len = 0;
    self->pending = 0;
    self->last_take = now;
    PyObject *out = build_taken(taken, n, decided, ndecided);
    free_taken(taken, n, decided, ndecided);
    return out;
}

/* ------------------------------------------------------------------ settings, clear, type */

/* Forget every count and decision. Everything is detached first: dropping a reference may run Python code. */
static int acc_release(Acc *self, Decided *fresh_ring) {
    Slot *slots = self->slots;
    Decided *ring = self->ring;
    Py_ssize_t nslots = self->nslots, history = self->history;
    PyMem_Free(self->index);
    self->slots = NULL;
    self->index = NULL;
    self->nslots = self->cap_slots = self->cap_index = 0;
    memset(self->recent, 0, sizeof self->recent);
    self->recent_next = 0;
    self->ring = fresh_ring;
    self->ring_next = self->ring_len = self->pending = 0;
    self->last_take = 0;
    for (Py_ssize_t i = 0; i < nslots; i++) {
        for (int k = 0; k < NKEY; k++) Py_DECREF(slots[i].key[k]);
        PyMem_Free(slots[i].samples);
        PyMem_Free(slots[i].medians);
    }
    PyMem_Free(slots);
    for (Py_ssize_t i = 0; ring && i < history; i++) {
        Py_XDECREF(ring[i].decision);
        Py_XDECREF(ring[i].op);
    }
    PyMem_Free(ring);
    return 0;
}

static PyObject *acc_clear(Acc *self, PyObject *unused) {
    Decided *fresh = PyMem_Calloc((size_t)self->history, sizeof(Decided));
    if (!fresh) return PyErr_NoMemory();
    acc_release(self, fresh);
    Py_RETURN_NONE;
}

static PyObject *acc_set_on(Acc *self, PyObject *flag) {
    int on = PyObject_IsTrue(flag);
    if (on < 0) return NULL;
    self->on = on;
    Py_RETURN_NONE;
}

static PyObject *acc_set_clock(Acc *self, PyObject *clock) {
    if (clock != Py_None && !PyCallable_Check(clock)) {
        PyErr_SetString(PyExc_TypeError, "Accumulator.set_clock() needs a callable or None");
        return NULL;
    }
    Py_XSETREF(self->clock, clock == Py_None ? NULL : Py_NewRef(clock));
    self->last_take = 0;  /* from another clock: the next add() starts the second afresh */
    Py_RETURN_NONE;
}

/* A new batch size starts every key's batch afresh (medians already made stay). */
static PyObject *acc_set_batch(Acc *self, PyObject *arg) {
    Py_ssize_t batch = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (batch == -1 && PyErr_Occurred()) return NULL;
    if (batch < 1) {
        PyErr_SetString(PyExc_ValueError, "Accumulator.set_batch() needs a positive int");
        return NULL;
    }
    self->batch = batch;
    for (Py_ssize_t i = 0; i < self->nslots; i++) self->slots[i].nsamples = 0;
    Py_RETURN_NONE;
}

static PyObject *acc_set_large(Acc *self, PyObject *arg) {
    long long large;
    if (as_ll(arg, &large) < 0) return NULL;
    self->large = large;
    Py_RETURN_NONE;
}

static PyObject *acc_bucket(Acc *self, PyObject *arg) {
    long long ns;
    if (as_ll(arg, &ns) < 0) return NULL;
    return PyLong_FromLong(bucket(ns));
}

static PyObject *acc_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"history", "batch", NULL};
    Py_ssize_t history = 256, batch = 16;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|nn:Accumulator", kwlist, &history, &batch)) return NULL;
    if (history < 1 || batch < 1) {
        PyErr_SetString(PyExc_ValueError, "Accumulator: history and batch must be positive");
        return NULL;
    }
    Acc *self = (Acc *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    self->ring = PyMem_Calloc((size_t)history, sizeof(Decided));
    if (!self->ring) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->history = history;
    self->batch = batch;
    self->on = 1;
    self->large = LLONG_MAX;
    return (PyObject *)self;
}

static void acc_dealloc(Acc *self) {
    PyTypeObject *type = Py_TYPE(self);
    acc_release(self, NULL);
    Py_CLEAR(self->clock);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyMethodDef acc_methods[] = {
    {"start", (PyCFunction)acc_start, METH_NOARGS,
     "start() -> the clock in ns (a float), or None while off: the t0 of add() and add_frame()."},
    {"add", (PyCFunction)(void (*)(void))acc_add, METH_FASTCALL,
     "add(op, fmt, comp, transport, nbytes_in, nbytes_out, t0, decision) -> None, or flags (METRICS_DUE: a "
     "take() is due; METRICS_LARGE: a large operation): count one operation from t0 (start()) to now."},
    {"add_plain", (PyCFunction)(void (*)(void))acc_add_plain, METH_FASTCALL,
     "add_plain(op, fmt, comp, transport, plain, t0, decision) -> as add(), for plain = (frame, payload bytes): "
     "the payload bytes in, len(frame) out."},
    {"add_frame", (PyCFunction)(void (*)(void))acc_add_frame, METH_FASTCALL,
     "add_frame(op, transport, nbytes_in, header, t0) -> as add(), keyed (op, format id, compression id, "
     "transport) and with the raw length as bytes out, read from a frame header tuple; nbytes_in is an int or "
     "the frame's buffer (its length in bytes)."},
    {"set_frame_fields", (PyCFunction)(void (*)(void))acc_set_frame_fields, METH_FASTCALL,
     "set_frame_fields(format_id, compression_id, raw_length): where add_frame finds them in a header."},
    {"observe", (PyCFunction)(void (*)(void))acc_observe, METH_FASTCALL,
     "observe(op, fmt, comp, transport, nbytes_in, nbytes_out, ns, decision): add() for a known duration."},
    {"take", (PyCFunction)acc_take, METH_O,
     "take(history) -> (rows, decided, medians), the deltas since the last take: rows (op, fmt, comp, transport, "
     "size class, count, bytes in, bytes out, ns, histogram as int64 bytes); decided (decision, op, ns) oldest "
     "first, the newest `history` kept, and empty unless history is true (they wait for a take that asks); "
     "medians (op, fmt, comp, size class, [throughput medians, bytes per ns])."},
    {"clear", (PyCFunction)acc_clear, METH_NOARGS, "clear(): forget every count, sample and decision."},
    {"set_on", (PyCFunction)acc_set_on, METH_O, "set_on(flag): whether start() reads the clock or says None."},
    {"set_clock", (PyCFunction)acc_set_clock, METH_O, "set_clock(clock): a callable of ns, or None (monotonic)."},
    {"set_batch", (PyCFunction)acc_set_batch, METH_O, "set_batch(n): operations per throughput median."},
    {"set_large", (PyCFunction)acc_set_large, METH_O,
     "set_large(nbytes): add() flags operations whose larger byte count reaches this (METRICS_LARGE)."},
    {"bucket", (PyCFunction)acc_bucket, METH_O, "bucket(ns) -> the histogram bucket of a duration."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot acc_slots[] = {
    {Py_tp_new, acc_new},
    {Py_tp_dealloc, acc_dealloc},
    {Py_tp_methods, acc_methods},
    {Py_tp_doc, "Accumulator(history=256, batch=16): tether.metrics' per-key counters (see tether.metrics._core)."},
    {0, NULL},
};

static PyType_Spec acc_spec = {
    "tether._speedups.Accumulator", sizeof(Acc), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE, acc_slots,
};

int metrics_add_type(PyObject *module) {
    PyObject *type = PyType_FromModuleAndSpec(module, &acc_spec, NULL);
    if (!type) return -1;
    int rc = PyModule_AddObjectRef(module, "Accumulator", type);
    Py_DECREF(type);
    if (rc < 0 || PyModule_AddIntConstant(module, "METRICS_NBUCKETS", NBUCKETS) < 0
        || PyModule_AddIntConstant(module, "METRICS_DRAIN_AT", DRAIN_AT) < 0
        || PyModule_AddIntConstant(module, "METRICS_DUE", FLAG_DUE) < 0
        || PyModule_AddIntConstant(module, "METRICS_LARGE", FLAG_LARGE) < 0
        || PyModule_AddIntConstant(module, "METRICS_API", METRICS_API) < 0)
        return -1;
    return 0;
}
