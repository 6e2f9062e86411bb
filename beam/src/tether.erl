%% @doc tether frames on the BEAM: write what Python reads, read what Python writes.
%%
%% The frame layout is docs/format.md. Payload checksums are CRC-32, which the
%% BEAM computes natively; frames Python writes with its default xxh3-64 are
%% refused unless `verify => false' is given, with an error saying how to get
%% CRC-32 frames from Python (the worker always sends them).
-module(tether).

-export([encode/1, encode/2, tensor/3, tensor/4, decode/1, decode/2, inspect/1,
         read_region/1, read_frame/3, nx_descr/1]).

-define(HEADER, 64).
-define(PRODUCER, <<"tether-beam/0.1.0">>).

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
        etf ->
            EtfOpts = case maps:get(compressed, Opts, false) of
                          true -> [compressed, {minor_version, 2}];
                          false -> [{minor_version, 2}]
                      end,
            frame(4, <<"etf">>, #{<<"binaries">> => <<"beam">>}, term_to_binary(Term, EtfOpts), Opts);
        raw when is_binary(Term) ->
            frame(1, <<"raw">>, #{<<"kind">> => <<"bytes">>}, Term, Opts);
        raw ->
            erlang:error({badarg, {raw_needs_binary, Term}})
    end.

%% @doc An ndarray frame from an Nx-style binary: native-endian, row-major.
-spec tensor(binary(), nx_type(), tuple() | [non_neg_integer()]) -> iodata().
tensor(Data, Type, Shape) -> tensor(Data, Type, Shape, #{}).

-spec tensor(binary(), nx_type(), tuple() | [non_neg_integer()], map()) -> iodata().
tensor(Data, {Kind, Bits} = Type, Shape, Opts) when is_binary(Data) ->
    Dims = if is_tuple(Shape) -> tuple_to_list(Shape); true -> Shape end,
    Count = lists:foldl(fun(D, Acc) -> D * Acc end, 1, Dims),
    Expected = Count * (Bits div 8),
    case byte_size(Data) of
        Expected -> ok;
        Got -> erlang:error({badarg, {tensor_size, Type, Shape, Expected, Got}})
    end,
    Info = #{<<"dtype">> => nx_descr(Type), <<"shape">> => Dims, <<"order">> => <<"C">>,
             <<"nx">> => [atom_to_binary(Kind), Bits]},
    frame(3, <<"ndarray">>, Info, Data, Opts).

%% @doc The NumPy dtype descr of an Nx type in this node's byte order.
-spec nx_descr(nx_type()) -> binary().
nx_descr({Kind, Bits}) ->
    E = case erlang:system_info(endian) of little -> <<"<">>; big -> <<">">> end,
    Bytes = integer_to_binary(Bits div 8),
    case {Kind, Bits} of
        {_, 8} when Kind =:= s; Kind =:= u -> <<"|", (code(Kind))/binary, "1">>;
        {bf, 16} -> <<E/binary, "u2">>;  % NumPy has no bfloat16: raw bits, nx says bf16
        _ -> <<E/binary, (code(Kind))/binary, Bytes/binary>>
    end.

code(f) -> <<"f">>;
code(s) -> <<"i">>;
code(u) -> <<"u">>;
code(c) -> <<"c">>.

frame(FormatId, Name, TypeInfo, Payload, Opts) ->
    Meta = meta(Name, TypeInfo, maps:get(metadata, Opts, #{})),
    MLen = byte_size(Meta),
    PLen = iolist_size(Payload),
    Pad = align(?HEADER + MLen) - ?HEADER - MLen,
    {CkKind, Ck} = case maps:get(checksum, Opts, crc32) of
                       crc32 -> {2, erlang:crc32(Payload)};
                       none -> {0, 0}
                   end,
    Body = <<"TTHR", 1:16/little, ?HEADER:16/little, FormatId:16/little, 0:8, CkKind:8,
             0:32/little, MLen:32/little, (erlang:crc32(Meta)):32/little, PLen:64/little,
             PLen:64/little, Ck:64/little, 1:16/little, 0:8/signed, 0:8, 0:8, 0:56>>,
    [Body, <<(erlang:crc32(Body)):32/little>>, Meta, <<0:(Pad * 8)>>, Payload].

%% The metadata map, spliced from encoded pairs: an ETF map may list its pairs
%% in any order. Format, schema, producer and lineage repeat from frame to
%% frame, so their encoding is kept (one small persistent term per format
%% name and node name).
meta(Name, TypeInfo, User) ->
    Key = {?MODULE, meta, Name, node()},
    Fixed = case persistent_term:get(Key, undefined) of
                undefined ->
                    F = pairs(#{<<"format">> => Name, <<"schema">> => 1, <<"producer">> => ?PRODUCER,
                                <<"lineage">> => [#{<<"producer">> => ?PRODUCER,
                                                    <<"node">> => atom_to_binary(node()),
                                                    <<"format">> => Name}]}),
                    persistent_term:put(Key, F),
                    F;
                F -> F
            end,
    <<131, Created/binary>> = term_to_binary(os:system_time(microsecond)),
    Type = pairs(#{<<"type">> => TypeInfo}),
    case map_size(User) of
        0 -> <<131, 116, 6:32, Fixed/binary, 109, 10:32, "created_at", Created/binary, Type/binary>>;
        _ -> <<131, 116, 7:32, Fixed/binary, 109, 10:32, "created_at", Created/binary, Type/binary,
               (pairs(#{<<"user">> => User}))/binary>>
    end.

pairs(Map) ->
    <<131, 116, _:32, Pairs/binary>> = term_to_binary(Map, [{minor_version, 2}]),
    Pairs.

align(N) -> (N + 63) band (bnot 63).

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
    case header(Frame) of
        {ok, H} ->
            case check(Frame, H, maps:get(verify, Opts, true)) of
                {ok, Meta, Payload} -> payload(maps:get(format, H), Meta, Payload, maps:get(safe, Opts, true));
                Error -> Error
            end;
        Error -> Error
    end;
decode(Frame, Opts) -> decode(iolist_to_binary(Frame), Opts).

%% @doc Header and metadata of a frame, without touching the payload.
-spec inspect(binary()) -> {ok, map()} | error().
inspect(Frame) when is_binary(Frame) ->
    case header(Frame) of
        {ok, H = #{meta_len := MLen, meta_crc := MCrc}} when byte_size(Frame) >= ?HEADER + MLen ->
            MetaBin = binary:part(Frame, ?HEADER, MLen),
            case erlang:crc32(MetaBin) of
                MCrc ->
                    case safe_term(MetaBin) of
                        {ok, Meta} -> {ok, maps:remove(meta_crc, H#{metadata => Meta})};
                        Error -> Error
                    end;
                Other -> {error, {metadata_checksum_mismatch, MCrc, Other}}
            end;
        {ok, #{meta_len := MLen}} -> {error, {truncated, ?HEADER + MLen, byte_size(Frame)}};
        Error -> Error
    end;
inspect(Frame) -> inspect(iolist_to_binary(Frame)).

header(<<"TTHR", V:16/little, _/binary>>) when V =/= 1 ->
    {error, {unsupported_frame_version, V, <<"this tether reads frame version 1; upgrade it">>}};
header(<<"TTHR", 1:16/little, 64:16/little, Fmt:16/little, Comp:8, Ck:8, Flags:32/little,
         MLen:32/little, MCrc:32/little, PLen:64/little, RLen:64/little, PCk:64/little,
         Schema:16/little, Level:8/signed, Filter:8, FSize:8, _:7/binary, HCrc:32/little,
         _/binary>> = Frame) ->
    case erlang:crc32(binary:part(Frame, 0, 60)) of
        %% Required flag bits: bit 0 (a stream chunk) is known; any other is refused.
        HCrc when Flags band 16#FFFE =/= 0 -> {error, {unsupported_flags, Flags}};
        HCrc ->
            {ok, #{format_id => Fmt, format => format_name(Fmt), compression => comp_name(Comp),
                   checksum => ck_name(Ck), checksum_value => PCk, meta_len => MLen, meta_crc => MCrc,
                   payload_offset => align(?HEADER + MLen), payload_size => PLen, raw_size => RLen,
                   schema => Schema, level => Level, filter => {Filter, FSize},
                   frame_size => align(?HEADER + MLen) + PLen}};
        Computed -> {error, {header_checksum_mismatch, HCrc, Computed}}
    end;
header(<<"TTHR", _/binary>> = F) -> {error, {truncated, ?HEADER, byte_size(F)}};
header(F) when byte_size(F) < 4 -> {error, {truncated, ?HEADER, byte_size(F)}};
header(_) -> {error, not_a_tether_frame}.

check(Frame, #{frame_size := Size}, _) when byte_size(Frame) < Size ->
    {error, {truncated, Size, byte_size(Frame)}};
check(Frame, #{frame_size := Size}, _) when byte_size(Frame) > Size ->
    {error, {trailing_bytes, byte_size(Frame) - Size}};
check(Frame, H = #{meta_len := MLen, meta_crc := MCrc, payload_offset := Off, payload_size := PLen}, Verify) ->
    MetaBin = binary:part(Frame, ?HEADER, MLen),
    Payload = binary:part(Frame, Off, PLen),
    case erlang:crc32(MetaBin) of
        MCrc ->
            case verify(H, Payload, Verify) of
                ok ->
                    case {meta_for(H, MetaBin), H} of
                        {{ok, Meta}, #{compression := none, filter := {0, _}}} -> {ok, Meta, Payload};
                        {{ok, Meta}, #{compression := gzip, filter := {0, _}, raw_size := Raw}} ->
                            case gunzip_bounded(Payload, Raw) of
                                {ok, Plain} -> {ok, Meta, Plain};
                                Error -> Error
                            end;
                        {{ok, _}, #{compression := C, filter := {0, _}}} ->
                            {error, {unsupported_compression, C,
                                     <<"the BEAM reads none and gzip; ask Python for compression=\"gzip\" or \"none\"">>}};
                        {{ok, _}, #{filter := F}} -> {error, {unsupported_filter, F}};
                        {Error, _} -> Error
                    end;
                Error -> Error
            end;
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

gunzip_bounded(Data, Raw) ->
    Z = zlib:open(),
    try
        ok = zlib:inflateInit(Z, 31),
        Out = inflate_loop(Z, zlib:safeInflate(Z, Data), [], 0, Raw),
        zlib:inflateEnd(Z),
        Out
    catch
        error:Reason -> {error, {bad_gzip, Reason}}
    after
        zlib:close(Z)
    end.

inflate_loop(Z, {continue, Chunk}, Acc, N, Raw) ->
    N1 = N + iolist_size(Chunk),
    if N1 > Raw -> {error, {decompressed_too_large, Raw}};
       true -> inflate_loop(Z, zlib:safeInflate(Z, []), [Acc, Chunk], N1, Raw)
    end;
inflate_loop(_, {finished, Chunk}, Acc, N, Raw) ->
    case N + iolist_size(Chunk) of
        Raw -> {ok, iolist_to_binary([Acc, Chunk])};
        Got -> {error, {decompressed_size_mismatch, Raw, Got}}
    end.

%% etf, raw and arrow payloads decode without their metadata (its CRC-32 is
%% checked all the same): a small call then pays for one binary_to_term, not two.
meta_for(#{format := F}, _) when F =:= etf; F =:= raw; F =:= arrow -> {ok, #{}};
meta_for(_, MetaBin) -> safe_term(MetaBin).

safe_term(Bin) ->
    try {ok, binary_to_term(Bin, [safe])}
    catch error:badarg -> {error, {bad_etf, <<"not valid ETF, or it names atoms this node does not know">>}}
    end.

payload(etf, _Meta, Payload, Safe) ->
    Decoded = case Safe of
                  true -> safe_term(Payload);
                  false -> try {ok, binary_to_term(Payload)} catch error:badarg -> {error, {bad_etf, <<"not valid ETF">>}} end
              end,
    case Decoded of
        {ok, Term} ->
            %% Funs run code: refuse them. Only scan when a fun tag can be present.
            case binary:match(Payload, [<<112>>, <<113>>]) =/= nomatch andalso has_fun(Term) of
                true -> {error, funs_refused};
                false -> {ok, Term}
            end;
        Error -> Error
    end;
payload(raw, _Meta, Payload, _) -> {ok, Payload};
payload(arrow, _Meta, Payload, _) -> {ok, Payload};
payload(scalar, #{<<"type">> := #{<<"kind">> := Kind}}, P, _) ->
    case {Kind, P} of
        {<<"int">>, _} when byte_size(P) > 0 -> S = byte_size(P) * 8, <<I:S/little-signed>> = P, {ok, I};
        {<<"float">>, <<F:64/little-float>>} -> {ok, F};
        {<<"bool">>, <<0>>} -> {ok, false};
        {<<"bool">>, <<1>>} -> {ok, true};
        {<<"none">>, <<>>} -> {ok, nil};
        {<<"str">>, _} -> {ok, P};
        _ -> {error, {bad_scalar, Kind}}
    end;
payload(ndarray, #{<<"type">> := Info}, Payload, _) ->
    Shape = list_to_tuple(maps:get(<<"shape">>, Info, [])),
    Type = case maps:get(<<"nx">>, Info, undefined) of
               [K, Bits] when K =:= <<"f">>; K =:= <<"s">>; K =:= <<"u">>; K =:= <<"c">>; K =:= <<"bf">> ->
                   {binary_to_atom(K), Bits};
               _ -> undefined
           end,
    {ok, #{type => Type, shape => Shape, data => Payload,
           dtype => maps:get(<<"dtype">>, Info, undefined), order => maps:get(<<"order">>, Info, <<"C">>)}};
payload(Other, _, _, _) -> {error, {unsupported_format, Other}}.

has_fun(T) when is_function(T) -> true;
has_fun([H | T]) -> has_fun(H) orelse has_fun(T);
has_fun(T) when is_tuple(T) -> has_fun(tuple_to_list(T));
has_fun(T) when is_map(T) -> has_fun(maps:to_list(T));
has_fun(_) -> false.

format_name(1) -> raw;
format_name(2) -> scalar;
format_name(3) -> ndarray;
format_name(4) -> etf;
format_name(5) -> arrow;
format_name(6) -> pickle;
format_name(N) -> {unknown, N}.

comp_name(0) -> none;
comp_name(1) -> lz4;
comp_name(2) -> zstd;
comp_name(3) -> gzip;
comp_name(N) -> {unknown, N}.

ck_name(0) -> none;
ck_name(1) -> xxh3_64;
ck_name(2) -> crc32;
ck_name(N) -> {unknown, N}.

%% ------------------------------------------------------------------ shared memory

%% @doc The newest committed frame of a tether shared-memory region (a file in
%% /dev/shm written by Python's tether.shm). Reads exactly that frame.
-spec read_region(file:filename_all()) -> {ok, binary()} | error().
read_region(Path) ->
    with_file(Path, fun(Fd) ->
        case file:pread(Fd, 0, 64) of
            {ok, <<"TTHRSHM1", 1:32/little, 4096:32/little, _Gen:64/little, _Pid:64/little,
                   _Start:64/little, _Cap:64/little, _Cursor:64/little, 126:32/little, Latest:32/little>>}
              when Latest >= 1, Latest =< 126 ->
                SlotAt = 64 + (Latest - 1) * 32,
                {ok, <<Off:64/little, Len:64/little, Seq:64/little, _:64>>} = file:pread(Fd, SlotAt, 32),
                case Seq =/= 0 andalso Seq rem 2 =:= 0 of
                    false -> {error, no_committed_frame};
                    true ->
                        {ok, Frame} = file:pread(Fd, Off, Len),
                        %% Re-check the slot: the frame must not have changed while read.
                        case file:pread(Fd, SlotAt, 32) of
                            {ok, <<Off:64/little, Len:64/little, Seq:64/little, _:64>>} -> {ok, Frame};
                            _ -> {error, frame_changed_while_reading}
                        end
                end;
            {ok, <<"TTHRSHM1", _/binary>>} -> {error, no_committed_frame};
            {ok, _} -> {error, not_a_tether_region};
            eof -> {error, not_a_tether_region};
            Error -> Error
        end
    end).

%% @doc `Len' bytes at `Offset' of a file: a frame someone named to us.
-spec read_frame(file:filename_all(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | error().
read_frame(Path, Offset, Len) ->
    with_file(Path, fun(Fd) ->
        case file:pread(Fd, Offset, Len) of
            {ok, Bin} when byte_size(Bin) =:= Len -> {ok, Bin};
            {ok, Bin} -> {error, {truncated, Len, byte_size(Bin)}};
            eof -> {error, {truncated, Len, 0}};
            Error -> Error
        end
    end).

with_file(Path, Fun) ->
    case file:open(Path, [read, raw, binary]) of
        {ok, Fd} -> try Fun(Fd) after file:close(Fd) end;
        Error -> Error
    end.
