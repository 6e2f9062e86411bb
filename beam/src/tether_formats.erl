%% @doc What each format puts in a frame, and what the BEAM makes of it.
%%
%% The BEAM writes etf, raw and ndarray frames, and reads every format Python
%% writes except pickle (docs/types.md).
-module(tether_formats).

-include("../include/tether.hrl").

-export([etf/2, raw/1, ndarray/3, nx_descr/1, needs_metadata/1, decode/4]).

-type built() :: {FormatId :: non_neg_integer(), Name :: binary(), TypeInfo :: map(), Payload :: iodata()}.
-export_type([built/0]).

%% ------------------------------------------------------------------ writing

%% @doc An etf payload, compressed by term_to_binary when asked.
-spec etf(term(), boolean()) -> built().
etf(Term, Compressed) ->
    EtfOpts = case Compressed of
                  true -> [compressed, {minor_version, ?ETF_MINOR_VERSION}];
                  false -> [{minor_version, ?ETF_MINOR_VERSION}]
              end,
    {?FORMAT_ETF, <<"etf">>, #{<<"binaries">> => <<"beam">>}, term_to_binary(Term, EtfOpts)}.

%% @doc A raw payload: the bytes themselves.
-spec raw(binary()) -> built().
raw(Bytes) -> {?FORMAT_RAW, <<"raw">>, #{<<"kind">> => <<"bytes">>}, Bytes}.

%% @doc An ndarray payload from an Nx-style binary: native-endian, row-major.
-spec ndarray(binary(), tether:nx_type(), tuple() | [non_neg_integer()]) -> built().
ndarray(Data, {Kind, Bits} = Type, Shape) ->
    Dims = if is_tuple(Shape) -> tuple_to_list(Shape); true -> Shape end,
    Count = lists:foldl(fun(D, Acc) -> D * Acc end, 1, Dims),
    Expected = Count * (Bits div 8),
    case byte_size(Data) of
        Expected -> ok;
        Got -> erlang:error({badarg, {tensor_size, Type, Shape, Expected, Got}})
    end,
    Info = #{<<"dtype">> => nx_descr(Type), <<"shape">> => Dims, <<"order">> => <<"C">>,
             <<"nx">> => [atom_to_binary(Kind), Bits]},
    {?FORMAT_NDARRAY, <<"ndarray">>, Info, Data}.

%% @doc The NumPy dtype descr of an Nx type in this node's byte order.
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

%% @doc Whether decoding a payload of this format reads the frame's metadata.
%% etf, raw and arrow payloads do not (its CRC-32 is checked all the same): a
%% small call then pays for one binary_to_term, not two.
-spec needs_metadata(atom() | {unknown, non_neg_integer()}) -> boolean().
needs_metadata(F) -> not (F =:= etf orelse F =:= raw orelse F =:= arrow).

%% @doc A payload as a term; never raises. etf goes through binary_to_term
%% (safe unless `safe => false'), with a compressed term's declared size
%% checked against `max_uncompressed_size' first, and funs are refused; raw,
%% arrow and ndarray data are the payload binary itself (no copy). Metadata
%% of the wrong shape is `{error, {bad_type_info, Format, Why}}'.
-spec decode(atom() | {unknown, non_neg_integer()}, map(), binary(),
             #{safe := boolean(), max_uncompressed_size := non_neg_integer()}) ->
          {ok, term()} | {error, term()}.
decode(etf, _Meta, <<?ETF_VERSION, ?ETF_COMPRESSED, Size:32, _/binary>>, #{max_uncompressed_size := Max})
  when Size > Max ->
    {error, {too_large, Size, Max}};
decode(etf, _Meta, Payload, #{safe := Safe}) ->
    case tether_etf:decode(Payload, Safe) of
        {ok, Term} ->
            %% Funs run code: refuse them. Only scan when a fun tag can be present.
            case binary:match(Payload, [<<?ETF_NEW_FUN>>, <<?ETF_EXPORT>>]) =/= nomatch andalso has_fun(Term) of
                true -> {error, funs_refused};
                false -> {ok, Term}
            end;
        Error -> Error
    end;
decode(raw, _Meta, Payload, _) -> {ok, Payload};
decode(arrow, _Meta, Payload, _) -> {ok, Payload};
decode(scalar, #{<<"type">> := #{<<"kind">> := Kind}}, P, _) -> scalar(Kind, P);
decode(ndarray, #{<<"type">> := Info}, Payload, _) when is_map(Info) -> ndarray(Info, Payload);
decode(Format, _, _, _) when Format =:= scalar; Format =:= ndarray ->
    {error, {bad_type_info, Format, <<"the metadata has no 'type' map of this format's fields">>}};
decode(Other, _, _, _) -> {error, {unsupported_format, Other}}.

%% The tensor map of docs/format.md §4 from an ndarray frame's type info. A
%% peer may write anything there: the shape is checked, and so is the
%% payload's size when the frame names an Nx type.
ndarray(Info, Payload) ->
    Shape = maps:get(<<"shape">>, Info, []),
    Type = nx_type(maps:get(<<"nx">>, Info, undefined)),
    case is_list(Shape) andalso lists:all(fun(D) -> is_integer(D) andalso D >= 0 end, Shape) of
        false -> {error, {bad_type_info, ndarray, <<"shape must be a list of non-negative integers">>}};
        true ->
            case Type =:= undefined orelse product(Shape) * (element(2, Type) div 8) =:= byte_size(Payload) of
                true -> {ok, #{type => Type, shape => list_to_tuple(Shape), data => Payload,
                               dtype => maps:get(<<"dtype">>, Info, undefined),
                               order => maps:get(<<"order">>, Info, <<"C">>)}};
                false -> {error, {bad_type_info, ndarray, <<"shape and type do not match the payload's size">>}}
            end
    end.

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
scalar(<<"bool">>, <<0>>) -> {ok, false};
scalar(<<"bool">>, <<1>>) -> {ok, true};
scalar(<<"none">>, <<>>) -> {ok, nil};
scalar(<<"str">>, P) -> {ok, P};
scalar(Kind, _) -> {error, {bad_scalar, Kind}}.

has_fun(T) when is_function(T) -> true;
has_fun([H | T]) -> has_fun(H) orelse has_fun(T);
has_fun(T) when is_tuple(T) -> has_fun(tuple_to_list(T));
has_fun(T) when is_map(T) -> has_fun(maps:to_list(T));
has_fun(_) -> false.
