%% The tether wire format on the BEAM: every id and layout, defined once.
%%
%% docs/format.md is the specification. The frame codec (tether_frame), the
%% region reader (tether_region) and the table tether_wire:tables/0 reports
%% to the cross-language test are all built from the macros below, so a
%% change here reaches every one of them.

-ifndef(TETHER_HRL).
-define(TETHER_HRL, true).

%% ------------------------------------------------------------------ frame

-define(FRAME_MAGIC, "TTHR").
-define(FRAME_VERSION, 1).
%% Metadata is padded so the payload starts on this boundary.
-define(FRAME_ALIGN, 64).
%% The major version of every format the BEAM writes.
-define(SCHEMA_VERSION, 1).
%% The schema versions the BEAM reads, per format (docs/format.md §4.1): it
%% reads schema 1 of every format it reads; a frame of another version is
%% {error, {unsupported_schema, ...}} before its payload is looked at.
-define(SCHEMA_OLDEST_READABLE, 1).
-define(SCHEMA_NEWEST_READABLE, 1).

%% Header field sizes in bytes, in wire order. The magic's size is its own
%% length. Offsets, the header size and the pattern below all follow from these.
-define(F_VERSION, 2).
-define(F_HEADER_SIZE, 2).
-define(F_FORMAT_ID, 2).
-define(F_COMPRESSION_ID, 1).
-define(F_CHECKSUM_KIND, 1).
-define(F_FLAGS, 4).
-define(F_METADATA_LENGTH, 4).
-define(F_METADATA_CRC32, 4).
-define(F_PAYLOAD_LENGTH, 8).
-define(F_RAW_LENGTH, 8).
-define(F_PAYLOAD_CHECKSUM, 8).
-define(F_SCHEMA_VERSION, 2).
-define(F_COMPRESSION_LEVEL, 1).
-define(F_FILTER_ID, 1).
-define(F_FILTER_SIZE, 1).
-define(F_RESERVED, 7).
-define(F_HEADER_CRC32, 4).

%% The header as {Name, Bytes} in wire order: what tether_wire reports. It
%% names the same size macros, in the same order, as ?FRAME_HEAD below.
-define(FRAME_FIELDS,
        [{<<"magic">>, length(?FRAME_MAGIC)},
         {<<"version">>, ?F_VERSION},
         {<<"header_size">>, ?F_HEADER_SIZE},
         {<<"format_id">>, ?F_FORMAT_ID},
         {<<"compression_id">>, ?F_COMPRESSION_ID},
         {<<"checksum_kind">>, ?F_CHECKSUM_KIND},
         {<<"flags">>, ?F_FLAGS},
         {<<"metadata_length">>, ?F_METADATA_LENGTH},
         {<<"metadata_crc32">>, ?F_METADATA_CRC32},
         {<<"payload_length">>, ?F_PAYLOAD_LENGTH},
         {<<"raw_length">>, ?F_RAW_LENGTH},
         {<<"payload_checksum">>, ?F_PAYLOAD_CHECKSUM},
         {<<"schema_version">>, ?F_SCHEMA_VERSION},
         {<<"compression_level">>, ?F_COMPRESSION_LEVEL},
         {<<"filter_id">>, ?F_FILTER_ID},
         {<<"filter_size">>, ?F_FILTER_SIZE},
         {<<"reserved">>, ?F_RESERVED},
         {<<"header_crc32">>, ?F_HEADER_CRC32}]).

%% The worker protocol's compact message (docs/format.md §8): the magic, the
%% CRC-32 of the ETF term that follows, then the term to the message's end.
%% Inline calls and replies use it with a worker whose ready lists it.
-define(COMPACT_MAGIC, "TTMC").
-define(F_COMPACT_CRC32, 4).
-define(COMPACT_FIELDS, [{<<"magic">>, length(?COMPACT_MAGIC)}, {<<"crc32">>, ?F_COMPACT_CRC32}]).
%% The file in a worker's private directory naming the call a SIGUSR1 cancels
%% (docs/format.md §8, "Cancelling").
-define(CANCEL_FILE, "cancel").
%% The call-argument marker `{?TAG_BYTES, Bin}' (docs/format.md §8, "Embedded
%% frames"): Bin arrives in Python as bytes, never decoded, even when it is a
%% whole frame. Python's side is tether.worker.BYTES_TAG (a test holds the two
%% to each other); a worker whose ready's <<"markers">> lacks it is not sent one.
-define(TAG_BYTES, '$tether_bytes').

%% The bytes the header CRC-32 covers (all but the CRC itself), and the whole
%% header: a sum, so a field added above moves the size with it. They call
%% length/1, so code compares them in guards rather than in patterns.
-define(HEADER_CRC_COVERS,
        (length(?FRAME_MAGIC) + ?F_VERSION + ?F_HEADER_SIZE + ?F_FORMAT_ID + ?F_COMPRESSION_ID
         + ?F_CHECKSUM_KIND + ?F_FLAGS + ?F_METADATA_LENGTH + ?F_METADATA_CRC32 + ?F_PAYLOAD_LENGTH
         + ?F_RAW_LENGTH + ?F_PAYLOAD_CHECKSUM + ?F_SCHEMA_VERSION + ?F_COMPRESSION_LEVEL
         + ?F_FILTER_ID + ?F_FILTER_SIZE + ?F_RESERVED)).
-define(HEADER_SIZE, (?HEADER_CRC_COVERS + ?F_HEADER_CRC32)).

%% Little-endian unsigned and signed integers of N bytes.
-define(LE(N), N/little-unit:8).
-define(LE_SIGNED(N), N/little-signed-unit:8).

%% The header up to its CRC-32, as binary segments: `<<?FRAME_HEAD(...)>>'
%% builds it from values and `<<?FRAME_HEAD(...), Crc:..., _/binary>>'
%% matches it with patterns. One layout for both directions.
-define(FRAME_HEAD(Version, HeaderSize, FormatId, CompressionId, ChecksumKind, Flags, MetaLen,
                   MetaCrc, PayloadLen, RawLen, PayloadChecksum, Schema, Level, FilterId,
                   FilterSize, Reserved),
        ?FRAME_MAGIC,
        Version:?LE(?F_VERSION),
        HeaderSize:?LE(?F_HEADER_SIZE),
        FormatId:?LE(?F_FORMAT_ID),
        CompressionId:?LE(?F_COMPRESSION_ID),
        ChecksumKind:?LE(?F_CHECKSUM_KIND),
        Flags:?LE(?F_FLAGS),
        MetaLen:?LE(?F_METADATA_LENGTH),
        MetaCrc:?LE(?F_METADATA_CRC32),
        PayloadLen:?LE(?F_PAYLOAD_LENGTH),
        RawLen:?LE(?F_RAW_LENGTH),
        PayloadChecksum:?LE(?F_PAYLOAD_CHECKSUM),
        Schema:?LE(?F_SCHEMA_VERSION),
        Level:?LE_SIGNED(?F_COMPRESSION_LEVEL),
        FilterId:?LE(?F_FILTER_ID),
        FilterSize:?LE(?F_FILTER_SIZE),
        Reserved:?F_RESERVED/binary).
-define(HEADER_CRC(Crc), Crc:?LE(?F_HEADER_CRC32)).
-define(RESERVED_ZERO, <<0:?LE(?F_RESERVED)>>).

%% Flags: the low 16 bits are required (a reader refuses one it does not
%% know), the high 16 may be ignored.
-define(FLAG_STREAM_CHUNK, 16#1).
-define(FLAGS_REQUIRED_MASK, 16#FFFF).
-define(FLAGS_KNOWN_REQUIRED, ?FLAG_STREAM_CHUNK).
-define(FLAGS_UNKNOWN_REQUIRED, (?FLAGS_REQUIRED_MASK band (bnot ?FLAGS_KNOWN_REQUIRED))).

%% Format ids (docs/format.md §4).
-define(FORMAT_RAW, 1).
-define(FORMAT_SCALAR, 2).
-define(FORMAT_NDARRAY, 3).
-define(FORMAT_ETF, 4).
-define(FORMAT_ARROW, 5).
-define(FORMAT_PICKLE, 6).
-define(FORMAT_SPARSE, 7).

%% Compression ids.
-define(COMPRESSION_NONE, 0).
-define(COMPRESSION_LZ4, 1).
-define(COMPRESSION_ZSTD, 2).
-define(COMPRESSION_GZIP, 3).

%% zlib's window bits for a gzip wrapper (the largest window, 15, + 16), and
%% the level the BEAM writes gzip at unless told (Python's default too).
-define(GZIP_WINDOW_BITS, 31).
%% zlib's own framing (RFC 1950): packed user metadata, docs/format.md section 2.
-define(ZLIB_WINDOW_BITS, 15).
-define(GZIP_DEFAULT_LEVEL, 6).
%% What a compressed payload (gzip, or an ETF term compressed by
%% term_to_binary) may inflate to unless `max_uncompressed_size' says
%% otherwise: Python's Limits.max_uncompressed_size default.
-define(MAX_UNCOMPRESSED_DEFAULT, (4 bsl 30)).
%% What packed user metadata may inflate to: Python's Limits.max_metadata_size default.
-define(MAX_METADATA_SIZE, (16 bsl 20)).

%% Payload checksum kinds.
-define(CHECKSUM_NONE, 0).
-define(CHECKSUM_XXH3_64, 1).
-define(CHECKSUM_CRC32, 2).

%% Payload filters applied before compression.
-define(FILTER_NONE, 0).
-define(FILTER_BYTE_SHUFFLE, 1).

%% ------------------------------------------------------------------ region

-define(REGION_MAGIC, "TTHRSHM1").
-define(REGION_VERSION, 1).
%% Where the data area starts (page-aligned); the slot table fills the gap.
-define(REGION_HEADER_SIZE, 4096).

%% Region header and slot field sizes in bytes, in file order.
-define(R_VERSION, 4).
-define(R_HEADER_SIZE, 4).
-define(R_GENERATION, 8).
-define(R_OWNER_PID, 8).
-define(R_OWNER_START, 8).
-define(R_CAPACITY, 8).
-define(R_CURSOR, 8).
-define(R_SLOT_COUNT, 4).
-define(R_LATEST, 4).
-define(S_OFFSET, 8).
-define(S_LENGTH, 8).
-define(S_SEQ, 8).
-define(S_RESERVED, 8).

-define(REGION_FIELDS,
        [{<<"magic">>, length(?REGION_MAGIC)},
         {<<"version">>, ?R_VERSION},
         {<<"header_size">>, ?R_HEADER_SIZE},
         {<<"generation">>, ?R_GENERATION},
         {<<"owner_pid">>, ?R_OWNER_PID},
         {<<"owner_start">>, ?R_OWNER_START},
         {<<"capacity">>, ?R_CAPACITY},
         {<<"cursor">>, ?R_CURSOR},
         {<<"slot_count">>, ?R_SLOT_COUNT},
         {<<"latest">>, ?R_LATEST}]).
-define(SLOT_FIELDS,
        [{<<"offset">>, ?S_OFFSET},
         {<<"length">>, ?S_LENGTH},
         {<<"seq">>, ?S_SEQ},
         {<<"reserved">>, ?S_RESERVED}]).

%% The fixed region header (the slot table follows it), a slot, and how many
%% slots fit between them and the data area (compare in guards, as above).
-define(REGION_HEAD_SIZE,
        (length(?REGION_MAGIC) + ?R_VERSION + ?R_HEADER_SIZE + ?R_GENERATION + ?R_OWNER_PID
         + ?R_OWNER_START + ?R_CAPACITY + ?R_CURSOR + ?R_SLOT_COUNT + ?R_LATEST)).
-define(SLOT_SIZE, (?S_OFFSET + ?S_LENGTH + ?S_SEQ + ?S_RESERVED)).
-define(REGION_SLOTS, ((?REGION_HEADER_SIZE - ?REGION_HEAD_SIZE) div ?SLOT_SIZE)).

-define(REGION_HEAD(Version, HeaderSize, Generation, OwnerPid, OwnerStart, Capacity, Cursor,
                    SlotCount, Latest),
        ?REGION_MAGIC,
        Version:?LE(?R_VERSION),
        HeaderSize:?LE(?R_HEADER_SIZE),
        Generation:?LE(?R_GENERATION),
        OwnerPid:?LE(?R_OWNER_PID),
        OwnerStart:?LE(?R_OWNER_START),
        Capacity:?LE(?R_CAPACITY),
        Cursor:?LE(?R_CURSOR),
        SlotCount:?LE(?R_SLOT_COUNT),
        Latest:?LE(?R_LATEST)).
-define(SLOT(Offset, Length, Seq, Reserved),
        Offset:?LE(?S_OFFSET),
        Length:?LE(?S_LENGTH),
        Seq:?LE(?S_SEQ),
        Reserved:?LE(?S_RESERVED)).

%% ------------------------------------------------------------------ ETF

%% The external term format tags the metadata is spliced from, and the two
%% that mark funs (refused in payloads).
-define(ETF_VERSION, 131).
-define(ETF_COMPRESSED, 80).
-define(ETF_MAP, 116).
-define(ETF_BINARY, 109).
-define(ETF_NEW_FUN, 112).
-define(ETF_EXPORT, 113).
%% The tags an atom can have in ETF (ATOM_CACHE_REF, ATOM_EXT, SMALL_ATOM_EXT,
%% ATOM_UTF8_EXT, SMALL_ATOM_UTF8_EXT): what follows EXPORT_EXT's tag.
-define(ETF_ATOM_TAGS, [82, 100, 115, 118, 119]).
-define(ETF_MINOR_VERSION, 2).

-endif.

%% The one version of tether (Python package and this companion): mix.exs reads
%% src/tether/_version.py and passes it with -D; the fallback serves a bare erlc
%% build, and test/tether_version_test.exs fails when the two disagree.
-ifndef(TETHER_VSN).
-define(TETHER_VSN, "0.1.0").
-endif.
