%% @doc The wire format's numbers as data, for tests and tools.
%%
%% Nothing is defined here: every value comes from include/tether.hrl, the
%% definitions the codec is built from. The map has the shape of Python's
%% tether._wire.tables(), so a test can compare the two languages key by key.
-module(tether_wire).

-include("../include/tether.hrl").

-export([tables/0]).

-type layout() :: [{Name :: binary(), Offset :: non_neg_integer(), Size :: pos_integer()}].
-export_type([layout/0]).

%% @doc Every wire id and layout, keyed by binaries as Python keys them by str.
%%
%% ```
%% #{<<"header_size">> := 64, <<"magic">> := <<"TTHR">>, <<"formats">> := #{<<"etf">> := 4}} =
%%     tether_wire:tables().
%% '''
-spec tables() -> #{binary() => term()}.
tables() ->
    #{<<"frame_version">> => ?FRAME_VERSION,
      <<"magic">> => <<?FRAME_MAGIC>>,
      <<"header_size">> => ?HEADER_SIZE,
      <<"align">> => ?FRAME_ALIGN,
      <<"header">> => offsets(?FRAME_FIELDS),
      <<"flags">> => #{<<"stream_chunk">> => ?FLAG_STREAM_CHUNK},
      <<"formats">> => #{<<"raw">> => ?FORMAT_RAW, <<"scalar">> => ?FORMAT_SCALAR,
                         <<"ndarray">> => ?FORMAT_NDARRAY, <<"etf">> => ?FORMAT_ETF,
                         <<"arrow">> => ?FORMAT_ARROW, <<"pickle">> => ?FORMAT_PICKLE,
                         <<"sparse">> => ?FORMAT_SPARSE},
      <<"compressions">> => #{<<"none">> => ?COMPRESSION_NONE, <<"lz4">> => ?COMPRESSION_LZ4,
                              <<"zstd">> => ?COMPRESSION_ZSTD, <<"gzip">> => ?COMPRESSION_GZIP},
      <<"checksums">> => #{<<"none">> => ?CHECKSUM_NONE, <<"xxh3-64">> => ?CHECKSUM_XXH3_64,
                           <<"crc32">> => ?CHECKSUM_CRC32},
      <<"filters">> => #{<<"none">> => ?FILTER_NONE, <<"byte-shuffle">> => ?FILTER_BYTE_SHUFFLE},
      <<"compact_message">> => #{<<"magic">> => <<?COMPACT_MAGIC>>, <<"header">> => offsets(?COMPACT_FIELDS)},
      <<"cancel_file">> => <<?CANCEL_FILE>>,
      <<"region">> => #{<<"magic">> => <<?REGION_MAGIC>>,
                        <<"version">> => ?REGION_VERSION,
                        <<"header_size">> => ?REGION_HEADER_SIZE,
                        <<"slot_size">> => ?SLOT_SIZE,
                        <<"slots">> => ?REGION_SLOTS,
                        <<"header">> => offsets(?REGION_FIELDS),
                        <<"slot">> => offsets(?SLOT_FIELDS)}}.

offsets(Fields) ->
    {Layout, _End} = lists:mapfoldl(fun({Name, Size}, At) -> {{Name, At, Size}, At + Size} end, 0, Fields),
    Layout.
