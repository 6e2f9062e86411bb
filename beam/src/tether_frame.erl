%% @doc The tether frame: build one around a payload, and take one apart.
%%
%% A frame is a fixed header, ETF metadata padded to the payload boundary,
%% and the payload (docs/format.md §1-3). The header layout and every id come
%% from include/tether.hrl. What a payload means is tether_formats' business;
%% this module checks sizes and checksums and undoes compression.
-module(tether_frame).

-include("../include/tether.hrl").

-export([build/5, header/1, open/2, metadata/2, unpack/3]).

-type header() :: #{atom() => term()}.
-export_type([header/0]).

%% ------------------------------------------------------------------ building

%% @doc A frame as iodata. `Opts': `checksum => crc32 | none', `metadata => map()',
%% `compression => none | gzip', `level => 0..9' (gzip's, default 6), and
%% `stream => map()' (a chunk of a stream: header flag bit 0 and the map as
%% the metadata's `stream' entry, docs/format.md §9). A gzip payload that
%% comes out no smaller is stored uncompressed, as Python does.
%%
%% ```
%% {Id, Name, TypeInfo, Payload} = tether_formats:raw(<<"abc">>),
%% Frame = iolist_to_binary(tether_frame:build(Id, Name, TypeInfo, Payload, #{})),
%% {ok, <<"abc">>} = tether:decode(Frame).
%% '''
-spec build(non_neg_integer(), binary(), map(), iodata(), map()) -> iodata().
build(FormatId, Name, TypeInfo, Payload, Opts) ->
    Meta = tether_meta:build(Name, TypeInfo, maps:get(metadata, Opts, #{}), Opts),
    MLen = byte_size(Meta),
    RLen = iolist_size(Payload),
    {Comp, Level, Stored} = compress(maps:get(compression, Opts, none), maps:get(level, Opts, ?GZIP_DEFAULT_LEVEL),
                                     Payload, RLen),
    PLen = iolist_size(Stored),
    Pad = align(?HEADER_SIZE + MLen) - ?HEADER_SIZE - MLen,
    {CkKind, Ck} = case maps:get(checksum, Opts, crc32) of
                       crc32 -> {?CHECKSUM_CRC32, erlang:crc32(Stored)};
                       none -> {?CHECKSUM_NONE, 0}
                   end,
    Flags = case Opts of #{stream := _} -> ?FLAG_STREAM_CHUNK; _ -> 0 end,
    Head = <<?FRAME_HEAD(?FRAME_VERSION, ?HEADER_SIZE, FormatId, Comp, CkKind, Flags, MLen,
                         (erlang:crc32(Meta)), PLen, RLen, Ck, ?SCHEMA_VERSION, Level, ?FILTER_NONE, 0,
                         ?RESERVED_ZERO)>>,
    [Head, <<?HEADER_CRC((erlang:crc32(Head)))>>, Meta, <<0:Pad/unit:8>>, Stored].

compress(none, _, Payload, _) -> {?COMPRESSION_NONE, 0, Payload};
compress(gzip, Level, Payload, RLen) when is_integer(Level), Level >= 0, Level =< 9 ->
    Packed = tether_gzip:deflate(Payload, Level),
    case byte_size(Packed) < RLen of
        true -> {?COMPRESSION_GZIP, Level, Packed};
        false -> {?COMPRESSION_NONE, 0, Payload}
    end;
compress(gzip, Level, _, _) -> erlang:error({badarg, {level, Level, <<"gzip levels are 0..9">>}});
compress(Other, _, _, _) -> erlang:error({badarg, {compression, Other, <<"the BEAM writes none or gzip">>}}).

%% ------------------------------------------------------------------ reading

%% @doc The header of a frame, checked (magic, version, CRC-32, required flags).
%% Only the header's 64 bytes are read.
%%
%% ```
%% Frame = iolist_to_binary(tether:encode(<<"abc">>, #{format => raw})),
%% {ok, #{format := raw, payload_size := 3, frame_size := Size}} = tether_frame:header(Frame),
%% Size = byte_size(Frame),
%% {error, {truncated, 64, 10}} = tether_frame:header(binary:part(Frame, 0, 10)).
%% '''
-spec header(binary()) -> {ok, header()} | {error, term()}.
header(<<?FRAME_MAGIC, V:?LE(?F_VERSION), _/binary>> = Frame) when V =/= ?FRAME_VERSION ->
    %% A flipped bit in the version must read as corruption, not as advice to upgrade: the version is
    %% believed when the header checksum, where this version keeps it, holds.
    case Frame of
        <<Covered:?HEADER_CRC_COVERS/binary, ?HEADER_CRC(HCrc), _/binary>> ->
            case erlang:crc32(Covered) of
                HCrc -> unsupported_version(V);
                Computed -> {error, {header_checksum_mismatch, HCrc, Computed}}
            end;
        _ -> unsupported_version(V)
    end;
header(<<?FRAME_HEAD(?FRAME_VERSION, HSize, Fmt, Comp, Ck, Flags, MLen, MCrc, PLen, RLen, PCk,
                     Schema, Level, Filter, FSize, _), ?HEADER_CRC(HCrc), _/binary>> = Frame)
  when HSize =:= ?HEADER_SIZE ->
    case erlang:crc32(binary:part(Frame, 0, ?HEADER_CRC_COVERS)) of
        HCrc when Flags band ?FLAGS_UNKNOWN_REQUIRED =/= 0 -> {error, {unsupported_flags, Flags}};
        %% Both are header fields no writer sets this way (docs/format.md §1): refused here, as Python's
        %% header reader does, so that no reader (decode, inspect, streams, regions) believes them.
        HCrc when Filter =:= ?FILTER_NONE, FSize =/= 0 -> {error, {unsupported_filter, {Filter, FSize}}};
        HCrc when Comp =:= ?COMPRESSION_NONE, RLen =/= PLen -> {error, {raw_size_mismatch, RLen, PLen}};
        %% Refused unverified too (inspect, verify => false): a kind this node does not know may come
        %% with a payload layout it does not know either (a newer writer).
        HCrc when Ck > ?CHECKSUM_CRC32 -> unknown_checksum(Ck);
        HCrc ->
            Offset = align(?HEADER_SIZE + MLen),
            {ok, #{format_id => Fmt, format => format_name(Fmt), compression => compression_name(Comp),
                   checksum => checksum_name(Ck), checksum_value => PCk, meta_len => MLen,
                   meta_crc => MCrc, payload_offset => Offset, payload_size => PLen, raw_size => RLen,
                   schema => Schema, level => Level, filter => {Filter, FSize}, flags => Flags,
                   frame_size => Offset + PLen}};
        Computed -> {error, {header_checksum_mismatch, HCrc, Computed}}
    end;
header(<<?FRAME_MAGIC, _:?LE(?F_VERSION), HSize:?LE(?F_HEADER_SIZE), _/binary>> = F)
  when byte_size(F) >= ?HEADER_SIZE ->
    %% Version 1 with another header size: corruption unless the checksum holds (a writer's bug).
    <<Covered:?HEADER_CRC_COVERS/binary, ?HEADER_CRC(HCrc), _/binary>> = F,
    case erlang:crc32(Covered) of
        HCrc -> {error, {bad_header_size, HSize, <<"this frame version has a ", (integer_to_binary(?HEADER_SIZE))/binary,
                                                   "-byte header: the writer is broken">>}};
        Computed -> {error, {header_checksum_mismatch, HCrc, Computed}}
    end;
header(<<?FRAME_MAGIC, _/binary>> = F) -> {error, {truncated, ?HEADER_SIZE, byte_size(F)}};
header(F) when byte_size(F) < length(?FRAME_MAGIC) -> {error, {truncated, ?HEADER_SIZE, byte_size(F)}};
header(_) -> {error, not_a_tether_frame}.

unsupported_version(V) ->
    {error, {unsupported_frame_version, V,
             <<"this tether reads frame version ", (integer_to_binary(?FRAME_VERSION))/binary, "; upgrade it">>}}.

%% @doc A whole frame's header, metadata bytes and stored payload, with the
%% frame size, the metadata CRC-32, the metadata map (tether_meta:check/2, decoded once: the
%% header map holds it as `metadata') and (when `Verify') the payload
%% checksum checked.
%%
%% ```
%% Frame = iolist_to_binary(tether:encode(<<"abc">>, #{format => raw})),
%% {ok, #{format := raw}, _MetaBin, <<"abc">>} = tether_frame:open(Frame, true),
%% Short = byte_size(Frame) - 1,
%% {error, {truncated, _, Short}} = tether_frame:open(binary:part(Frame, 0, Short), true).
%% '''
-spec open(binary(), boolean()) -> {ok, header(), binary(), binary()} | {error, term()}.
open(Frame, Verify) ->
    case header(Frame) of
        {ok, #{frame_size := Size}} when byte_size(Frame) < Size ->
            {error, {truncated, Size, byte_size(Frame)}};
        {ok, #{frame_size := Size}} when byte_size(Frame) > Size ->
            {error, {trailing_bytes, byte_size(Frame) - Size}};
        {ok, H = #{meta_len := MLen, payload_offset := Off, payload_size := PLen}} ->
            MetaBin = binary:part(Frame, ?HEADER_SIZE, MLen),
            Payload = binary:part(Frame, Off, PLen),
            case meta_crc(H, MetaBin) of
                ok when binary_part(Frame, ?HEADER_SIZE + MLen, Off - ?HEADER_SIZE - MLen) =/=
                        <<0:(Off - ?HEADER_SIZE - MLen)/unit:8>> ->
                    %% Nothing covers the padding: it must be what writers put there, as Python checks too.
                    {error, nonzero_padding};
                ok -> opened(H, MetaBin, Payload, Verify);
                Error -> Error
            end;
        Error -> Error
    end.

%% A frame whose sizes, metadata CRC-32 and padding hold: its checksum kind,
%% metadata map and (when `Verify') payload checksum are checked in turn.
opened(H, MetaBin, Payload, Verify) ->
    case tether_meta:check(maps:get(format, H), MetaBin) of
        {ok, Meta} ->
            case verify(H, Payload, Verify) of
                ok -> {ok, H#{metadata => Meta}, MetaBin, Payload};
                Error -> Error
            end;
        Error -> Error
    end.

unknown_checksum(Ck) ->
    {error, {unsupported_checksum, {unknown, Ck},
             <<"checksum kinds are 0 (none), 1 (xxh3-64) and 2 (crc32); the frame may come from a newer "
               "tether: upgrade this side to read it">>}}.

%% @doc The metadata bytes of a frame whose header was read, CRC-32 checked;
%% the payload need not be there.
%%
%% ```
%% Frame = iolist_to_binary(tether:encode(<<"abc">>, #{format => raw})),
%% {ok, H} = tether_frame:header(Frame),
%% {ok, MetaBin} = tether_frame:metadata(Frame, H),
%% {ok, #{<<"format">> := <<"raw">>}} = tether_meta:decode(MetaBin).
%% '''
-spec metadata(binary(), header()) -> {ok, binary()} | {error, term()}.
metadata(Frame, H = #{meta_len := MLen}) when byte_size(Frame) >= ?HEADER_SIZE + MLen ->
    MetaBin = binary:part(Frame, ?HEADER_SIZE, MLen),
    case meta_crc(H, MetaBin) of
        ok -> {ok, MetaBin};
        Error -> Error
    end;
metadata(Frame, #{meta_len := MLen}) -> {error, {truncated, ?HEADER_SIZE + MLen, byte_size(Frame)}}.

%% @doc The payload as its format wrote it: compression and filter undone,
%% inflating to at most `Max' bytes (a larger declared size is refused first).
%%
%% ```
%% Frame = iolist_to_binary(tether:encode(lists:duplicate(1000, ok), #{compression => gzip})),
%% {ok, H = #{raw_size := Raw}, _, Stored} = tether_frame:open(Frame, true),
%% {ok, Payload} = tether_frame:unpack(H, Stored, 1 bsl 20),
%% Raw = byte_size(Payload),
%% {error, {too_large, Raw, 100}} = tether_frame:unpack(H, Stored, 100).
%% '''
-spec unpack(header(), binary(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
unpack(#{compression := none, filter := {?FILTER_NONE, 0}}, Payload, _) -> {ok, Payload};
unpack(#{compression := gzip, filter := {?FILTER_NONE, 0}, raw_size := Raw}, Payload, Max) ->
    tether_gzip:inflate(Payload, Raw, Max);
unpack(#{compression := C, filter := {?FILTER_NONE, 0}}, _, _) ->
    {error, {unsupported_compression, C,
             <<"the BEAM reads gzip and none; in Python, write the frame with reader=\"beam\" "
               "(or compression=\"gzip\" or \"none\")">>}};
unpack(#{filter := F}, _, _) -> {error, {unsupported_filter, F}}.

meta_crc(#{meta_crc := MCrc}, MetaBin) ->
    case erlang:crc32(MetaBin) of
        MCrc -> ok;
        Computed -> {error, {metadata_checksum_mismatch, MCrc, Computed}}
    end.

verify(_, _, false) -> ok;
verify(#{checksum := none}, _, _) -> ok;
verify(#{checksum := crc32, checksum_value := Stored}, Payload, true) ->
    case erlang:crc32(Payload) of
        Stored -> ok;
        Computed -> {error, {checksum_mismatch, Stored, Computed}}
    end;
verify(#{checksum := Kind}, _, true) ->
    {error, {unverifiable_checksum, Kind,
             <<"the BEAM verifies crc32; write the frame with checksum=\"crc32\" in Python, "
               "or decode with #{verify => false}">>}}.

align(N) -> (N + ?FRAME_ALIGN - 1) band (bnot (?FRAME_ALIGN - 1)).

format_name(?FORMAT_RAW) -> raw;
format_name(?FORMAT_SCALAR) -> scalar;
format_name(?FORMAT_NDARRAY) -> ndarray;
format_name(?FORMAT_ETF) -> etf;
format_name(?FORMAT_ARROW) -> arrow;
format_name(?FORMAT_PICKLE) -> pickle;
format_name(?FORMAT_SPARSE) -> sparse;
format_name(N) -> {unknown, N}.

compression_name(?COMPRESSION_NONE) -> none;
compression_name(?COMPRESSION_LZ4) -> lz4;
compression_name(?COMPRESSION_ZSTD) -> zstd;
compression_name(?COMPRESSION_GZIP) -> gzip;
compression_name(N) -> {unknown, N}.

checksum_name(?CHECKSUM_NONE) -> none;
checksum_name(?CHECKSUM_XXH3_64) -> xxh3_64;
checksum_name(?CHECKSUM_CRC32) -> crc32;
checksum_name(N) -> {unknown, N}.
