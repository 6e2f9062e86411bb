%% @doc tether frames on the BEAM: write what Python reads, read what Python writes.
%%
%% The frame layout is docs/format.md. Payload checksums are CRC-32, which the
%% BEAM computes natively (Python's default too); frames Python writes with
%% `checksum="xxh3-64"' are refused unless `verify => false' is given, with an
%% error saying how to get CRC-32 frames. The BEAM reads and writes gzip
%% payload compression; lz4 and zstd frames are refused with an error that
%% says how to get one it reads (`reader="beam"' in Python).
%%
%% This module is the public API. tether_formats knows what each format puts
%% in a frame, tether_frame builds and reads frames, tether_region reads them
%% from files, and include/tether.hrl holds the wire format's ids and layout.
%%
%% The decoders (`decode/1,2', `inspect/1', `read_region/1', `read_frame/3')
%% never raise: whatever the input, they return `{ok, _}' or `{error, Reason}'.
%% Each failure they know has its own reason; anything that slips past those
%% checks is caught at this boundary as `{error, {malformed, Where, Class, What}}'.
-module(tether).

-include("../include/tether.hrl").

-export([encode/1, encode/2, tensor/3, tensor/4, decode/1, decode/2, inspect/1, user_metadata/1,
         read_region/1, read_frame/3, read_frame/4, nx_descr/1]).

-type nx_type() :: {f, 16 | 32 | 64} | {s, 8 | 16 | 32 | 64} | {u, 8 | 16 | 32 | 64}
                 | {c, 64 | 128} | {bf, 16}.
-type error() :: {error, term()}.
-export_type([nx_type/0]).

%% ------------------------------------------------------------------ encoding

%% @doc Encode a term as an etf frame.
-spec encode(term()) -> iodata().
encode(Term) -> encode(Term, #{}).

%% @doc Encode with options: `format => etf | raw', `compressed => boolean()'
%% (term_to_binary's own compression of an etf payload), `compression => none |
%% gzip' and `level => 0..9' (the frame's payload compression, which Python
%% reads too; a payload gzip does not shrink is stored as it is),
%% `checksum => crc32 | none', `metadata => map()', and `type_versions =>
%% #{binary() => pos_integer()}' (the newest version of each `Tether.Type' the
%% reader reads; registered types are written in their wire form either way),
%% `parent => Metadata | Lineage' and `step => binary()' (extend the lineage
%% of the frame this value came from: docs/format.md section 2.1), and
%% `float_atoms => true' (the atoms `nan', `infinity' and `neg_infinity' in
%% an etf term stand for floats: Python reads them as floats, as it reads a
%% call's arguments; without it, as `tether.Atom's). Metadata
%% and a lineage list are plain data that Python and any node read: atoms
%% other than `true', `false' and `nil' are written as their names (binaries),
%% and pids, references, ports and funs are refused. An unknown
%% option or a bad value is a `badarg' error naming it:
%% `{badarg, {bad_option, Key, Message}}'.
%%
%% ```
%% Frame = tether:encode(lists:duplicate(1000, ok), #{compression => gzip}),
%% {ok, #{compression := gzip}} = tether:inspect(Frame).
%% '''
-spec encode(term(), map() | list()) -> iodata().
encode(Term, Opts) ->
    case tether_options:encode(Opts) of
        {ok, Checked} -> encode_checked(Term, Checked);
        {error, Reason} -> erlang:error({badarg, Reason})
    end.

encode_checked(Term, Opts) ->
    case maps:get(format, Opts, etf) of
        etf -> frame(tether_formats:etf(Term, maps:get(compressed, Opts, false),
                                        maps:get(type_versions, Opts, #{}), maps:get(float_atoms, Opts, false)),
                     Opts);
        raw when is_binary(Term) -> frame(tether_formats:raw(Term), Opts);
        raw -> erlang:error({badarg, {raw_needs_binary, Term}})
    end.

%% @doc An ndarray frame from an Nx-style binary: native-endian, row-major.
%% A binary whose size does not match the type and shape is a `badarg' error.
%% The frame is iodata (the data is not copied); as a call argument, pass
%% `iolist_to_binary/1' of it: an argument that is one binary holding a whole
%% frame arrives in Python decoded, while a list of binaries arrives as a list.
%%
%% ```
%% Frame = tether:tensor(<<1.0:32/float-native, 2.0:32/float-native>>, {f, 32}, {2}),
%% {ok, #{type := {f, 32}, shape := {2}}} = tether:decode(iolist_to_binary(Frame)).
%% '''
-spec tensor(binary(), nx_type(), tuple() | [non_neg_integer()]) -> iodata().
tensor(Data, Type, Shape) -> tensor(Data, Type, Shape, #{}).

%% @doc As {@link tensor/3}, with the frame options of {@link encode/2}
%% (`compression', `level', `checksum', `metadata', `parent', `step').
%%
%% ```
%% Frame = tether:tensor(binary:copy(<<0>>, 1000), {u, 8}, {10, 100}, #{compression => gzip}),
%% {ok, #{format := ndarray, compression := gzip, raw_size := 1000}} = tether:inspect(iolist_to_binary(Frame)).
%% '''
-spec tensor(binary(), nx_type(), tuple() | [non_neg_integer()], map()) -> iodata().
tensor(Data, Type, Shape, Opts) ->
    case tether_options:encode(Opts) of
        {ok, Checked} -> frame(tether_formats:ndarray(Data, Type, Shape), Checked);
        {error, Reason} -> erlang:error({badarg, Reason})
    end.

%% @doc The NumPy dtype descr of an Nx type in this node's byte order.
%%
%% ```
%% <<"<f4">> = tether:nx_descr({f, 32}),  % on a little-endian node
%% <<"|u1">> = tether:nx_descr({u, 8}).
%% '''
-spec nx_descr(nx_type()) -> binary().
nx_descr(Type) -> tether_formats:nx_descr(Type).

frame({FormatId, Name, TypeInfo, Payload}, Opts) ->
    tether_frame:build(FormatId, Name, TypeInfo, Payload, Opts).

%% ------------------------------------------------------------------ decoding

%% @doc Decode a frame. etf frames go through `binary_to_term(_, [safe])' and
%% funs are refused; raw and ndarray data are sub-binaries of `Frame' (no copy);
%% arrow frames give their Arrow IPC stream bytes; sparse frames a map of
%% shape, format and component tensors. A format schema version this node
%% does not read is `{error, {unsupported_schema, Format, Version, Detail}}'
%% (see tether_formats:check_schema/2). Never raises: input that is not a
%% frame's bytes (a binary or iodata) is `{error, {not_a_frame, Message}}'.
%%
%% ```
%% {ok, [1, 2]} = tether:decode(iolist_to_binary(tether:encode([1, 2]))),
%% {error, not_a_tether_frame} = tether:decode(<<"junk">>).
%% '''
-spec decode(iodata()) -> {ok, term()} | error().
decode(Frame) -> decode(Frame, #{}).

%% @doc Options: `verify => boolean()' (payload checksum; header and metadata are
%% always checked), `safe => boolean()' (default true: no new atoms; false only
%% for trusted peers), `max_uncompressed_size => non_neg_integer()' (what a
%% gzip payload or a compressed ETF term may inflate to, checked against its
%% declared size before inflating; default 4 GiB, as Python's `tether.Limits').
%% Another key, or a bad value, is `{error, {bad_option, Key, Message}}'.
%%
%% ```
%% Big = iolist_to_binary(tether:encode(binary:copy(<<0>>, 100000), #{compression => gzip})),
%% {error, {too_large, 100006, 1000}} = tether:decode(Big, #{max_uncompressed_size => 1000}).
%% '''
-spec decode(iodata(), map() | list()) -> {ok, term()} | error().
decode(Frame, Opts) ->
    case tether_options:decode(Opts) of
        {ok, Checked} -> safely(decode, fun() -> decode_frame(Frame, Checked) end);
        Error -> Error
    end.

decode_frame(Frame, Opts) when is_binary(Frame) ->
    case tether_frame:open(Frame, maps:get(verify, Opts, true)) of
        {ok, #{format := Format, schema := Schema}, _, _} = Opened ->
            case tether_formats:check_schema(Format, Schema) of
                ok -> decode_opened(Opened, Opts);
                Error -> Error
            end;
        Error -> Error
    end;
decode_frame(Frame, Opts) when is_list(Frame) -> flattened(Frame, fun(Bin) -> decode_frame(Bin, Opts) end);
decode_frame(Frame, _Opts) -> not_a_frame(Frame).

%% A frame whose header, checksums and schema version were checked.
decode_opened({ok, H = #{format := Format, metadata := Meta}, _MetaBin, Stored}, Opts) ->
    Max = maps:get(max_uncompressed_size, Opts, ?MAX_UNCOMPRESSED_DEFAULT),
    case tether_frame:unpack(H, Stored, Max) of
        {ok, Payload} ->
            tether_formats:decode(Format, Meta, Payload,
                                  #{safe => maps:get(safe, Opts, true), max_uncompressed_size => Max});
        Error -> Error
    end.

a_map({ok, Meta}) when is_map(Meta) -> {ok, Meta};
a_map({ok, _}) -> {error, {bad_metadata, <<"frame metadata must be an ETF map">>}};
a_map(Error) -> Error.

%% @doc Header and metadata of a frame, without touching the payload. Never raises.
%%
%% ```
%% {ok, #{format := etf, metadata := #{<<"format">> := <<"etf">>}}} =
%%     tether:inspect(iolist_to_binary(tether:encode(x))).
%% '''
-spec inspect(iodata()) -> {ok, map()} | error().
inspect(Frame) -> safely(inspect, fun() -> inspect_frame(Frame) end).

%% @doc The user metadata of a frame (`metadata' given to the writer), or
%% `#{}'. Large user metadata is packed (`user_packed', docs/format.md
%% section 2) so that decoding a frame never pays for it; this unpacks it,
%% bounded by its declared size and the default uncompressed limit. Never raises.
%%
%% ```
%% {ok, #{<<"run">> := 7}} = tether:user_metadata(tether:encode(1, #{metadata => #{<<"run">> => 7}})).
%% '''
-spec user_metadata(iodata()) -> {ok, map()} | {error, term()}.
user_metadata(Frame) ->
    safely(user_metadata, fun() ->
        case inspect_frame(Frame) of
            {ok, #{metadata := #{<<"user_packed">> := Packed}}} -> tether_meta:unpack_user(Packed);
            {ok, #{metadata := #{<<"user">> := User}}} when is_map(User) -> {ok, User};
            {ok, _} -> {ok, #{}};
            Error -> Error
        end
    end).

inspect_frame(Frame) when is_binary(Frame) ->
    case tether_frame:header(Frame) of
        {ok, H} ->
            case tether_frame:metadata(Frame, H) of
                {ok, MetaBin} ->
                    case a_map(tether_meta:decode(MetaBin)) of
                        {ok, Meta} -> {ok, maps:remove(meta_crc, H#{metadata => Meta})};
                        Error -> Error
                    end;
                Error -> Error
            end;
        Error -> Error
    end;
inspect_frame(Frame) when is_list(Frame) -> flattened(Frame, fun inspect_frame/1);
inspect_frame(Frame) -> not_a_frame(Frame).

%% Iodata as one binary, handed to `Then'; a list that is not iodata is not a frame.
flattened(Frame, Then) ->
    try iolist_to_binary(Frame) of
        Bin -> Then(Bin)
    catch
        error:badarg -> not_a_frame(Frame)
    end.

not_a_frame(Frame) ->
    {error, {not_a_frame, iolist_to_binary(io_lib:format("a frame is a binary or iodata, got ~0tP", [Frame, 8]))}}.

%% ------------------------------------------------------------------ files

%% @doc The newest committed frame of a tether shared-memory region (a file in
%% /dev/shm written by Python's tether.shm). Reads exactly that frame, or
%% returns an error (a file cut short, a slot past its end). Never raises.
%%
%% ```
%% {error, enoent} = tether:read_region("/dev/shm/no-such-tether-region").
%% '''
-spec read_region(file:filename_all()) -> {ok, binary()} | error().
read_region(Path) -> safely(read_region, fun() -> tether_region:read_region(Path) end).

%% @doc `Len' bytes at `Offset' of a file: a frame someone named to us.
%% A file that holds fewer is `{error, {truncated, Len, Got}}'. Never raises.
%%
%% ```
%% {error, {bad_range, -1, 8}} = tether:read_frame("/etc/hostname", -1, 8).
%% '''
-spec read_frame(file:filename_all(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | error().
read_frame(Path, Offset, Len) -> read_frame(Path, Offset, Len, fun() -> ok end).

%% @doc As {@link read_frame/3}, calling `Opened()' once the file is open,
%% before it is read (tether_region:read_frame/4).
%%
%% ```
%% {error, enoent} = tether:read_frame("/nonexistent/tether-x", 0, 1, fun() -> ok end).
%% '''
-spec read_frame(file:filename_all(), non_neg_integer(), non_neg_integer(), fun(() -> term())) ->
          {ok, binary()} | error().
read_frame(Path, Offset, Len, Opened) ->
    safely(read_frame, fun() -> tether_region:read_frame(Path, Offset, Len, Opened) end).

%% ------------------------------------------------------------------ the boundary

%% A failure no check named becomes an error naming the function and the
%% kind of failure (not its arguments, which may be large binaries).
safely(Where, Fun) ->
    try Fun()
    catch Class:Reason -> {error, {malformed, Where, Class, kind(Reason)}}
    end.

kind(Reason) when is_tuple(Reason), tuple_size(Reason) > 0, is_atom(element(1, Reason)) -> element(1, Reason);
kind(Reason) when is_atom(Reason) -> Reason;
kind(_) -> unknown.
