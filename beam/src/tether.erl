%% @doc tether frames on the BEAM: write what Python reads, read what Python writes.
%%
%% The frame layout is docs/format.md. Payload checksums are CRC-32, which the
%% BEAM computes natively; frames Python writes with its default xxh3-64 are
%% refused unless `verify => false' is given, with an error saying how to get
%% CRC-32 frames from Python (the worker always sends them).
%%
%% This module is the public API. tether_formats knows what each format puts
%% in a frame, tether_frame builds and reads frames, tether_region reads them
%% from files, and include/tether.hrl holds the wire format's ids and layout.
-module(tether).

-export([encode/1, encode/2, tensor/3, tensor/4, decode/1, decode/2, inspect/1,
         read_region/1, read_frame/3, nx_descr/1]).

-type nx_type() :: {f, 16 | 32 | 64} | {s, 8 | 16 | 32 | 64} | {u, 8 | 16 | 32 | 64}
                 | {c, 64 | 128} | {bf, 16}.
-type error() :: {error, term()}.
-export_type([nx_type/0]).

%% ------------------------------------------------------------------ encoding

%% @doc Encode a term as an etf frame.
-spec encode(term()) -> iodata().
encode(Term) -> encode(Term, #{}).

%% @doc Encode with options: `format => etf | raw', `compressed => boolean()',
%% `checksum => crc32 | none', `metadata => map()'.
-spec encode(term(), map() | list()) -> iodata().
encode(Term, Opts) when is_list(Opts) -> encode(Term, maps:from_list(Opts));
encode(Term, Opts) when is_map(Opts) ->
    case maps:get(format, Opts, etf) of
        etf -> frame(tether_formats:etf(Term, maps:get(compressed, Opts, false)), Opts);
        raw when is_binary(Term) -> frame(tether_formats:raw(Term), Opts);
        raw -> erlang:error({badarg, {raw_needs_binary, Term}})
    end.

%% @doc An ndarray frame from an Nx-style binary: native-endian, row-major.
-spec tensor(binary(), nx_type(), tuple() | [non_neg_integer()]) -> iodata().
tensor(Data, Type, Shape) -> tensor(Data, Type, Shape, #{}).

-spec tensor(binary(), nx_type(), tuple() | [non_neg_integer()], map()) -> iodata().
tensor(Data, {_Kind, _Bits} = Type, Shape, Opts) when is_binary(Data) ->
    frame(tether_formats:ndarray(Data, Type, Shape), Opts).

%% @doc The NumPy dtype descr of an Nx type in this node's byte order.
-spec nx_descr(nx_type()) -> binary().
nx_descr(Type) -> tether_formats:nx_descr(Type).

frame({FormatId, Name, TypeInfo, Payload}, Opts) ->
    tether_frame:build(FormatId, Name, TypeInfo, Payload, Opts).

%% ------------------------------------------------------------------ decoding

%% @doc Decode a frame. etf frames go through `binary_to_term(_, [safe])' and
%% funs are refused; raw and ndarray data are sub-binaries of `Frame' (no copy);
%% arrow frames give their Arrow IPC stream bytes.
-spec decode(binary()) -> {ok, term()} | error().
decode(Frame) -> decode(Frame, #{}).

%% @doc Options: `verify => boolean()' (payload checksum; header and metadata are
%% always checked), `safe => boolean()' (default true: no new atoms; false only
%% for trusted peers such as our own worker).
-spec decode(binary(), map()) -> {ok, term()} | error().
decode(Frame, Opts) when is_binary(Frame) ->
    case tether_frame:open(Frame, maps:get(verify, Opts, true)) of
        {ok, H = #{format := Format}, MetaBin, Stored} ->
            case metadata(Format, MetaBin) of
                {ok, Meta} ->
                    case tether_frame:unpack(H, Stored) of
                        {ok, Payload} -> tether_formats:decode(Format, Meta, Payload, maps:get(safe, Opts, true));
                        Error -> Error
                    end;
                Error -> Error
            end;
        Error -> Error
    end;
decode(Frame, Opts) -> decode(iolist_to_binary(Frame), Opts).

metadata(Format, MetaBin) ->
    case tether_formats:needs_metadata(Format) of
        true -> tether_meta:decode(MetaBin);
        false -> {ok, #{}}
    end.

%% @doc Header and metadata of a frame, without touching the payload.
-spec inspect(binary()) -> {ok, map()} | error().
inspect(Frame) when is_binary(Frame) ->
    case tether_frame:header(Frame) of
        {ok, H} ->
            case tether_frame:metadata(Frame, H) of
                {ok, MetaBin} ->
                    case tether_meta:decode(MetaBin) of
                        {ok, Meta} -> {ok, maps:remove(meta_crc, H#{metadata => Meta})};
                        Error -> Error
                    end;
                Error -> Error
            end;
        Error -> Error
    end;
inspect(Frame) -> inspect(iolist_to_binary(Frame)).

%% ------------------------------------------------------------------ files

%% @doc The newest committed frame of a tether shared-memory region (a file in
%% /dev/shm written by Python's tether.shm). Reads exactly that frame.
-spec read_region(file:filename_all()) -> {ok, binary()} | error().
read_region(Path) -> tether_region:read_region(Path).

%% @doc `Len' bytes at `Offset' of a file: a frame someone named to us.
-spec read_frame(file:filename_all(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | error().
read_frame(Path, Offset, Len) -> tether_region:read_frame(Path, Offset, Len).
