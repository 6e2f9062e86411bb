/* Every ETF tag the C fast path knows, by its OTP name, once.
 *
 * The same names and numbers as tether/_etf/tags.py: module.c exposes this
 * table as _speedups.TAGS and tests/test_etf_tags.py holds the two equal.
 * Distribution-protocol headers are not here: only Python refuses them.
 */
#ifndef TETHER_TAGS_H
#define TETHER_TAGS_H

#define ETF_TAGS(X)                \
    X(NEW_FLOAT_EXT, 70)           \
    X(BIT_BINARY_EXT, 77)          \
    X(ATOM_CACHE_REF, 82)          \
    X(NEW_PID_EXT, 88)             \
    X(NEW_PORT_EXT, 89)            \
    X(NEWER_REFERENCE_EXT, 90)     \
    X(SMALL_INTEGER_EXT, 97)       \
    X(INTEGER_EXT, 98)             \
    X(FLOAT_EXT, 99)               \
    X(ATOM_EXT, 100)               \
    X(REFERENCE_EXT, 101)          \
    X(PORT_EXT, 102)               \
    X(PID_EXT, 103)                \
    X(SMALL_TUPLE_EXT, 104)        \
    X(LARGE_TUPLE_EXT, 105)        \
    X(NIL_EXT, 106)                \
    X(STRING_EXT, 107)             \
    X(LIST_EXT, 108)               \
    X(BINARY_EXT, 109)             \
    X(SMALL_BIG_EXT, 110)          \
    X(LARGE_BIG_EXT, 111)          \
    X(NEW_FUN_EXT, 112)            \
    X(EXPORT_EXT, 113)             \
    X(NEW_REFERENCE_EXT, 114)      \
    X(SMALL_ATOM_EXT, 115)         \
    X(MAP_EXT, 116)                \
    X(FUN_EXT, 117)                \
    X(ATOM_UTF8_EXT, 118)          \
    X(SMALL_ATOM_UTF8_EXT, 119)    \
    X(V4_PORT_EXT, 120)            \
    X(LOCAL_EXT, 121)              \
    X(VERSION_MAGIC, 131)          \
    X(COMPRESSED, 80)

enum etf_tag {
#define ETF_TAG_ENUM(name, value) name = value,
    ETF_TAGS(ETF_TAG_ENUM)
#undef ETF_TAG_ENUM
};

#endif
