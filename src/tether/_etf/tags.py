"""Every ETF tag, once, by its name in OTP's erl_ext_dist documentation.

Nothing else in tether writes a tag as a number: the codecs import these
names, and the C fast path's ``tags.h`` is tested against ``TAGS``.
"""

from __future__ import annotations

# Term tags: the byte that starts each encoded term.
NEW_FLOAT_EXT = 70
BIT_BINARY_EXT = 77
ATOM_CACHE_REF = 82
NEW_PID_EXT = 88
NEW_PORT_EXT = 89
NEWER_REFERENCE_EXT = 90
SMALL_INTEGER_EXT = 97
INTEGER_EXT = 98
FLOAT_EXT = 99
ATOM_EXT = 100
REFERENCE_EXT = 101
PORT_EXT = 102
PID_EXT = 103
SMALL_TUPLE_EXT = 104
LARGE_TUPLE_EXT = 105
NIL_EXT = 106
STRING_EXT = 107
LIST_EXT = 108
BINARY_EXT = 109
SMALL_BIG_EXT = 110
LARGE_BIG_EXT = 111
NEW_FUN_EXT = 112
EXPORT_EXT = 113
NEW_REFERENCE_EXT = 114
SMALL_ATOM_EXT = 115
MAP_EXT = 116
FUN_EXT = 117
ATOM_UTF8_EXT = 118
SMALL_ATOM_UTF8_EXT = 119
V4_PORT_EXT = 120
LOCAL_EXT = 121

# Bytes that frame a whole value rather than tag a term inside it.
VERSION_MAGIC = 131
COMPRESSED = 80

# Every name above, for the test that holds the C table to this one.
TAGS: dict[str, int] = {name: value for name, value in dict(globals()).items() if name.isupper()}

# Distribution-protocol headers can follow the version byte in place of a
# term. They reuse term-tag numbers (DIST_FRAG_CONT is NEW_FLOAT_EXT's 70),
# so they stay out of TAGS, and only the decoder's refusal of a header
# passed as a term reads them.
DIST_HEADER = 68
DIST_FRAG_HEADER = 69
DIST_FRAG_CONT = 70
DIST_HEADER_H = 72  # 'H', refused as a distribution header like the others
DIST_TAGS: dict[str, int] = {
    "DIST_HEADER": DIST_HEADER,
    "DIST_FRAG_HEADER": DIST_FRAG_HEADER,
    "DIST_FRAG_CONT": DIST_FRAG_CONT,
    "DIST_HEADER_H": DIST_HEADER_H,
}
