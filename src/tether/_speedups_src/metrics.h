/* tether._speedups.Accumulator (metrics.c): what module.c needs to add it to the module. */
#ifndef TETHER_METRICS_H
#define TETHER_METRICS_H

#include "common.h"

/* Add the Accumulator type and the METRICS_* constants tether/metrics/_core.py checks; -1 on error. */
int metrics_add_type(PyObject *module);

#endif
