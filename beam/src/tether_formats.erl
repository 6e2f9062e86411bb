%% @doc What each format puts in a frame, and what the BEAM makes of it.
%%
%% The BEAM writes etf, raw and ndarray frames (and the scalar `nil' of a
%% stream's end frame), and reads every format Python
%% writes except pickle (docs/types.md), at the schema versions
%% `check_schema/2' accepts.
-module(tether_formats).

-include("../include/tether.hrl").

-export([etf/2, etf/3, etf/4, raw/1, none/0, ndarray/3, nx_descr/1, decode/4, check_schema/2, schemas/0]).
-export([holds_fun/1]).

-type built() :: {FormatId :: non_neg_integer(), Name :: binary(), TypeInfo :: map(), Payload :: iodata()}.
-export_type([built/0]).

%% ------------------------------------------------------------------ writing

%% @doc An etf payload, compressed by term_to_binary when asked.
-spec etf(term(), boolean()) -> built().
etf(Term, Compressed) -> etf(Term, Compressed, #{}).

%% @doc An etf payload whose registered `Tether.Type' structs are written in
%% their wire form, at the newest version the reader reads (`Versions', by type
%% name; a type missing from it is written at its own version). Without any
%% registered type the term is written as it is.
%%
%% ```
%% {_, <<"etf">>, _, Payload} = tether_formats:etf([1], false, #{}),
%% [1] = binary_to_term(Payload).
%% '''
-spec etf(term(), boolean(), #{binary() => pos_integer()}) -> built().
etf(Term, Compressed, Versions) -> etf(Term, Compressed, Versions, false).

%% @doc As {@link etf/3}; `FloatAtoms' marks the payload (`nan => atoms' in its
%% type, docs/format.md section 4) so that Python reads the atoms `nan',
%% `infinity' and `neg_infinity' in it as floats, as a call's arguments are read.
%%
%% ```
%% {_, _, #{<<"nan">> := <<"atoms">>}, _} = tether_formats:etf([nan, 1.0], false, #{}, true).
%% '''
-spec etf(term(), boolean(), #{binary() => pos_integer()}, boolean()) -> built().
etf(Term0, Compressed, Versions, FloatAtoms) ->
    Term = case tether_etf:to_wire(Term0, Versions) of
               {ok, W} -> W;
               {error, Reason} -> erlang:error({badarg, Reason})
           end,
    EtfOpts = case Compressed of
                  true -> [compressed, {minor_version, ?ETF_MINOR_VERSION}];
                  false -> [{minor_version, ?ETF_MINOR_VERSION}]
              end,
    Type = case FloatAtoms of
               true -> #{<<"binaries">> => <<"beam">>, <<"nan">> => <<"atoms">>};
               false -> #{<<"binaries">> => <<"beam">>}
           end,
    {?FORMAT_ETF, <<"etf">>, Type, term_to_binary(Term, EtfOpts)}.

%% @doc A raw payload: the bytes themselves.
%%
%% ```
%% {1, <<"raw">>, #{<<"kind">> := <<"bytes">>}, <<"abc">>} = tether_formats:raw(<<"abc">>).
%% '''
-spec raw(binary()) -> built().
raw(Bytes) -> {?FORMAT_RAW, <<"raw">>, #{<<"kind">> => <<"bytes">>}, Bytes}.

%% @doc A scalar payload holding Python's `None' (`nil' here): empty, its
%% kind in the type information. A stream's end frame is one (docs/format.md §9).
%%
%% ```
%% {2, <<"scalar">>, #{<<"kind">> := <<"none">>}, <<>>} = tether_formats:none().
%% '''
-spec none() -> built().
none() -> {?FORMAT_SCALAR, <<"scalar">>, #{<<"kind">> => <<"none">>}, <<>>}.

%% @doc An ndarray payload from an Nx-style binary: native-endian, row-major.
%% A binary whose size does not match the type and shape is a `badarg' error.
%%
%% ```
%% {3, <<"ndarray">>, #{<<"shape">> := [2, 2], <<"dtype">> := <<"|u1">>}, <<1, 2, 3, 4>>} =
%%     tether_formats:ndarray(<<1, 2, 3, 4>>, {u, 8}, {2, 2}).
%% '''
-spec ndarray(binary(), tether:nx_type(), tuple() | [non_neg_integer()]) -> built().
ndarray(Data, Type, Shape) ->
    {Kind, Bits} = nx_type_arg(Type),
    Dims = dims_arg(Shape),
    is_binary(Data) orelse erlang:error({badarg, {tensor_data, <<"the tensor's bytes are a binary">>}}),
    Count = lists:foldl(fun(D, Acc) -> D * Acc end, 1, Dims),
    Expected = Count * (Bits div 8),
    case byte_size(Data) of
        Expected -> ok;
        Got -> erlang:error({badarg, {tensor_size, Type, Shape, Expected, Got}})
    end,
    Info = #{<<"dtype">> => nx_descr(Type), <<"shape">> => Dims, <<"order">> => <<"C">>,
             <<"nx">> => [atom_to_binary(Kind), Bits]},
    {?FORMAT_NDARRAY, <<"ndarray">>, Info, Data}.

nx_type_arg({K, B} = T) when (K =:= f andalso (B =:= 16 orelse B =:= 32 orelse B =:= 64));
                             ((K =:= s orelse K =:= u) andalso (B =:= 8 orelse B =:= 16 orelse B =:= 32 orelse B =:= 64));
                             (K =:= c andalso (B =:= 64 orelse B =:= 128)); (K =:= bf andalso B =:= 16) -> T;
nx_type_arg(T) ->
    erlang:error({badarg, {tensor_type, T, <<"an Nx type: {f, 16 | 32 | 64}, {s | u, 8 | 16 | 32 | 64}, "
                                             "{c, 64 | 128} or {bf, 16}">>}}).

dims_arg(Shape) ->
    Dims = if is_tuple(Shape) -> tuple_to_list(Shape); true -> Shape end,
    case is_list(Dims) andalso lists:all(fun(D) -> is_integer(D) andalso D >= 0 end, Dims) of
        true -> Dims;
        false -> erlang:error({badarg, {tensor_shape, Shape, <<"a tuple (or list) of non-negative integers">>}})
    end.

%% @doc The NumPy dtype descr of an Nx type in this node's byte order.
%%
%% ```
%% <<"<c8">> = tether_formats:nx_descr({c, 64}),  % on a little-endian node
%% <<"<u2">> = tether_formats:nx_descr({bf, 16}).  % NumPy has no bfloat16: its raw bits
%% '''
-spec nx_descr(tether:nx_type()) -> binary().
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

%% ------------------------------------------------------------------ reading

%% @doc The schema versions this node reads, per format it reads:
%% `#{Format => {Oldest, Newest}}' (docs/format.md §4.1): what a worker
%% handshake can tell a Python writer.
%%
%% ```
%% #{ndarray := {1, 1}} = tether_formats:schemas().
%% '''
-spec schemas() -> #{atom() => {pos_integer(), pos_integer()}}.
schemas() ->
    maps:from_list([{F, {?SCHEMA_OLDEST_READABLE, ?SCHEMA_NEWEST_READABLE}}
                    || F <- [raw, scalar, ndarray, etf, arrow, sparse]]).

%% @doc `ok' when this node reads schema `Version' of `Format''s payload and
%% type info; otherwise `{error, {unsupported_schema, Format, Version, Detail}}'
%% where `Detail' says what this node reads (`reads => {Oldest, Newest}') and
%% which side to upgrade (`upgrade => reader | writer', `hint => binary()').
%% A format this node does not read at all is left to decode/4's error.
%%
%% ```
%% ok = tether_formats:check_schema(ndarray, 1),
%% {error, {unsupported_schema, ndarray, 2, #{upgrade := reader}}} = tether_formats:check_schema(ndarray, 2).
%% '''
-spec check_schema(atom() | {unknown, non_neg_integer()}, non_neg_integer()) -> ok | {error, term()}.
check_schema(Format, Version) ->
    case maps:find(Format, schemas()) of
        {ok, {Oldest, Newest}} when Version >= Oldest, Version =< Newest -> ok;
        {ok, {Oldest, Newest} = Reads} ->
            {Side, Hint} = schema_hint(atom_to_binary(Format), Version > Newest, Oldest, Newest),
            {error, {unsupported_schema, Format, Version, #{reads => Reads, upgrade => Side, hint => Hint}}};
        error -> ok
    end.

schema_hint(Name, true, _, Newest) ->
    {reader, <<"the frame is newer than this node reads: upgrade tether on the reading (BEAM) side, "
               "or have the writer write ", Name/binary, " schema ", (integer_to_binary(Newest))/binary>>};
schema_hint(Name, false, Oldest, _) ->
    {writer, <<"the frame is older than this node reads (", Name/binary, " schema ",
               (integer_to_binary(Oldest))/binary, " and newer): re-encode it with a newer tether">>}.

%% @doc A payload as a term; never raises. etf goes through binary_to_term
%% (safe unless `safe => false'), with a compressed term's declared size
%% checked against `max_uncompressed_size' first, and funs are refused; raw,
%% arrow and ndarray data are the payload binary itself (no copy). Metadata
%% of the wrong shape is `{error, {bad_type_info, Format, Why}}'.
%%
%% ```
%% Opts = #{safe => true, max_uncompressed_size => 1 bsl 20},
%% {ok, [1]} = tether_formats:decode(etf, #{}, term_to_binary([1]), Opts),
%% {error, funs_refused} = tether_formats:decode(etf, #{}, term_to_binary(fun() -> ok end), Opts),
%% {_, _, TypeInfo, Data} = tether_formats:ndarray(<<1, 2, 3, 4>>, {u, 8}, {2, 2}),
%% {ok, #{type := {u, 8}, shape := {2, 2}}} =
%%     tether_formats:decode(ndarray, #{<<"type">> => TypeInfo}, Data, Opts).
%% '''
-spec decode(atom() | {unknown, non_neg_integer()}, map(), binary(),
             #{safe := boolean(), max_uncompressed_size := non_neg_integer(), root => [non_neg_integer()]}) ->
          {ok, term()} | {error, term()}.
decode(etf, _Meta, <<?ETF_VERSION, ?ETF_COMPRESSED, Size:32, _/binary>>, #{max_uncompressed_size := Max})
  when Size > Max ->
    {error, {too_large, Size, Max}};
decode(etf, _Meta, Payload, Opts = #{safe := Safe}) ->
    case tether_etf:decode(Payload, Safe, maps:get(root, Opts, [])) of
        {ok, Term} ->
            %% Funs run code: refuse them. Only walk the term when the bytes can hold one.
            case may_hold_fun(Payload) andalso has_fun(Term) of
                true -> {error, funs_refused};
                false -> {ok, Term}
            end;
        Error -> Error
    end;
decode(raw, _Meta, Payload, _) -> {ok, Payload};
decode(arrow, _Meta, Payload, _) -> {ok, Payload};
decode(scalar, #{<<"type">> := #{<<"kind">> := Kind}}, P, _) -> scalar(Kind, P);
decode(ndarray, #{<<"type">> := Info}, Payload, _) when is_map(Info) -> ndarray(Info, Payload);
decode(sparse, #{<<"type">> := Info}, Payload, _) when is_map(Info) -> sparse(Info, Payload);
decode(Format, _, _, _) when Format =:= scalar; Format =:= ndarray; Format =:= sparse ->
    {error, {bad_type_info, Format, <<"the metadata has no 'type' map of this format's fields">>}};
decode(Other, _, _, _) -> {error, {unsupported_format, Other}}.

%% @doc Whether `Term' holds a fun anywhere (a walk of the term).
%%
%% ```
%% true = tether_formats:holds_fun([1, #{k => fun erlang:abs/1}]),
%% false = tether_formats:holds_fun([1, <<"pq">>]).
%% '''
-spec holds_fun(term()) -> boolean().
holds_fun(Term) -> has_fun(Term).

%% Whether an ETF payload can hold a fun: NEW_FUN_EXT's tag byte anywhere
%% (binary_to_term does not check the size that follows it, so any byte can
%% come next), or EXPORT_EXT's tag followed by an atom's tag (what it must
%% hold; a "q" in a string no longer walks the term). A compressed payload
%% hides its bytes: always walked.
may_hold_fun(<<?ETF_VERSION, ?ETF_COMPRESSED, _/binary>>) -> true;
may_hold_fun(Payload) -> binary:match(Payload, fun_tags()) =/= nomatch.

%% The search pattern, compiled once per node (compiling it on every decode
%% cost 0.8 us of a small reply's 4).
fun_tags() ->
    case persistent_term:get({?MODULE, fun_tags}, undefined) of
        undefined ->
            Pairs = [<<?ETF_NEW_FUN>> | [<<?ETF_EXPORT, Tag>> || Tag <- ?ETF_ATOM_TAGS]],
            Pattern = binary:compile_pattern(Pairs),
            persistent_term:put({?MODULE, fun_tags}, Pattern),
            Pattern;
        Pattern -> Pattern
    end.

%% The tensor map of docs/format.md §4 from an ndarray frame's type info. A
%% peer may write anything there: the shape is checked, and so is the
%% payload's size when the frame names an Nx type.
ndarray(Info, Payload) ->
    Shape = maps:get(<<"shape">>, Info, []),
    Type = nx_type(maps:get(<<"nx">>, Info, undefined)),
    case dims(Shape) of
        false -> {error, {bad_type_info, ndarray, <<"shape must be a list of non-negative integers">>}};
        true ->
            case Type =:= undefined orelse product(Shape) * (element(2, Type) div 8) =:= byte_size(Payload) of
                true -> {ok, #{type => Type, shape => list_to_tuple(Shape), data => Payload,
                               dtype => maps:get(<<"dtype">>, Info, undefined),
                               order => maps:get(<<"order">>, Info, <<"C">>)}};
                false -> {error, {bad_type_info, ndarray, <<"shape and type do not match the payload's size">>}}
            end
    end.

%% The sparse map of docs/format.md §4: `#{format => csr | csc | coo,
%% shape => tuple(), kind => binary(), components => #{atom() => Tensor}}',
%% each tensor as ndarray/2 gives it (a sub-binary of the payload: no copy).
%% Every component's name, offset and size is checked against the payload.
sparse(#{<<"layout">> := Layout, <<"shape">> := Shape, <<"components">> := Comps} = Info, Payload)
  when is_list(Comps), length(Comps) >= 0 ->  % length/1 fails the guard for an improper list
    Names = case Layout of
                <<"coo">> -> [<<"data">>, <<"coords">>];
                L when L =:= <<"csr">>; L =:= <<"csc">> -> [<<"data">>, <<"indices">>, <<"indptr">>];
                _ -> []
            end,
    Listed = [maps:get(<<"name">>, C, undefined) || C <- Comps, is_map(C)],
    case dims(Shape) andalso Names =/= [] andalso Listed =:= Names of
        false -> {error, {bad_type_info, sparse, <<"shape must be non-negative integers, layout csr, csc or coo, "
                                                   "with its components in order">>}};
        true -> sparse_tensors(Comps, Payload, #{format => binary_to_atom(Layout), shape => list_to_tuple(Shape),
                                                 kind => maps:get(<<"kind">>, Info, undefined)}, #{})
    end;
sparse(_, _) -> {error, {bad_type_info, sparse, <<"the type info needs layout, shape and components">>}}.

%% A shape as a peer wrote it: a proper list of non-negative integers, or false.
dims(Shape) when is_list(Shape), length(Shape) >= 0 -> lists:all(fun(D) -> is_integer(D) andalso D >= 0 end, Shape);
dims(_) -> false.

sparse_tensors([], _, Out, Acc) -> {ok, Out#{components => Acc}};
sparse_tensors([#{<<"name">> := Name, <<"dtype">> := Dtype, <<"shape">> := Shape, <<"offset">> := Off,
                  <<"nbytes">> := Len} | Rest], Payload, Out, Acc)
  when is_integer(Off), is_integer(Len), Off >= 0, Len >= 0, Off + Len =< byte_size(Payload), is_binary(Dtype) ->
    Info = #{<<"shape">> => Shape, <<"dtype">> => Dtype, <<"nx">> => descr_nx(Dtype)},
    case ndarray(Info, binary:part(Payload, Off, Len)) of
        {ok, T} -> sparse_tensors(Rest, Payload, Out, Acc#{binary_to_atom(Name) => T});
        {error, _} -> {error, {bad_type_info, sparse, <<"component ", Name/binary, " does not match its size">>}}
    end;
sparse_tensors(_, _, _, _) ->
    {error, {bad_type_info, sparse, <<"a component lies outside the payload or lacks a field">>}}.

%% The Nx type of a little-endian (or byte-order-free) NumPy numeric descr, as [Kind, Bits].
descr_nx(<<E, K, N/binary>>) when E =:= $<; E =:= $| ->
    case {K, catch binary_to_integer(N)} of
        {$f, B} when is_integer(B) -> [<<"f">>, B * 8];
        {$i, B} when is_integer(B) -> [<<"s">>, B * 8];
        {$u, B} when is_integer(B) -> [<<"u">>, B * 8];
        {$b, 1} -> [<<"u">>, 8];
        {$c, B} when is_integer(B) -> [<<"c">>, B * 8];
        _ -> undefined
    end;
descr_nx(_) -> undefined.

%% An Nx type the frame names, or undefined when it names none this node
%% knows (the dtype then says what the data is).
nx_type([K, Bits]) when is_binary(K), is_integer(Bits), Bits > 0, Bits rem 8 =:= 0 ->
    case K of
        <<"f">> -> {f, Bits};
        <<"s">> -> {s, Bits};
        <<"u">> -> {u, Bits};
        <<"c">> -> {c, Bits};
        <<"bf">> -> {bf, Bits};
        _ -> undefined
    end;
nx_type(_) -> undefined.

product(Dims) -> lists:foldl(fun(D, Acc) -> D * Acc end, 1, Dims).

scalar(<<"int">>, P) when byte_size(P) > 0 -> S = byte_size(P) * 8, <<I:S/little-signed>> = P, {ok, I};
scalar(<<"float">>, <<F:64/little-float>>) -> {ok, F};
%% NaN and the infinities, which no Erlang float holds: the atoms Nx uses, as in etf frames.
scalar(<<"float">>, <<_:64>> = P) ->
    <<Bits:64/little-unsigned>> = P,
    case {(Bits bsr 52) band 16#7FF, Bits band ((1 bsl 52) - 1), Bits bsr 63} of
        {16#7FF, 0, 0} -> {ok, infinity};
        {16#7FF, 0, 1} -> {ok, neg_infinity};
        {16#7FF, _, _} -> {ok, nan};
        _ -> {error, {bad_scalar, <<"float">>}}
    end;
scalar(<<"bool">>, <<0>>) -> {ok, false};
scalar(<<"bool">>, <<1>>) -> {ok, true};
scalar(<<"none">>, <<>>) -> {ok, nil};
scalar(<<"str">>, P) -> {ok, P};
scalar(Kind, _) -> {error, {bad_scalar, Kind}}.

%% The walk builds nothing (no tuple_to_list or maps:to_list per node): a
%% third faster on a reply of 10,000 small maps (4.6 ms against 6.1).
has_fun(T) when is_list(T) -> list_has_fun(T);
has_fun(T) when is_tuple(T) -> tuple_has_fun(T, tuple_size(T));
has_fun(T) when is_map(T) -> map_has_fun(maps:next(maps:iterator(T)));
has_fun(T) -> is_function(T).

list_has_fun([H | T]) -> has_fun(H) orelse list_has_fun(T);
list_has_fun([]) -> false;
list_has_fun(Tail) -> has_fun(Tail).  % an improper list's tail

tuple_has_fun(_T, 0) -> false;
tuple_has_fun(T, I) -> has_fun(element(I, T)) orelse tuple_has_fun(T, I - 1).

map_has_fun(none) -> false;
map_has_fun({K, V, Next}) -> has_fun(K) orelse has_fun(V) orelse map_has_fun(maps:next(Next)).
