%% @doc Frame metadata: the ETF map between header and payload (docs/format.md §3).
-module(tether_meta).

-include("../include/tether.hrl").

-export([build/3, build/4, decode/1, check/2, unpack_user/1]).

-define(PRODUCER, <<"tether-beam/", ?TETHER_VSN>>).
-define(CREATED_AT, "created_at").

%% @doc The metadata of a frame of format `Name', spliced from encoded pairs:
%% an ETF map may list its pairs in any order. Format, schema, producer and
%% lineage repeat from frame to frame, so their encoding is kept (one small
%% persistent term per format name and node name).
-spec build(binary(), map(), map()) -> binary().
build(Name, TypeInfo, User) -> spliced(Name, TypeInfo, User, #{}).

spliced(Name, TypeInfo, User, Extra) ->
    Key = {?MODULE, Name, node()},
    Fixed = case persistent_term:get(Key, undefined) of
                undefined ->
                    F = pairs(#{<<"format">> => Name, <<"schema">> => ?SCHEMA_VERSION,
                                <<"producer">> => ?PRODUCER,
                                <<"lineage">> => [own_entry(Name)]}),
                    persistent_term:put(Key, F),
                    F;
                F -> F
            end,
    <<?ETF_VERSION, Created/binary>> = term_to_binary(os:system_time(microsecond)),
    %% Four fixed pairs, created_at and type; user only when given, then the extra pairs (stream).
    Varying = case map_size(User) of 0 -> Extra#{<<"type">> => TypeInfo};
                                     _ -> Extra#{<<"type">> => TypeInfo, <<"user">> => User}
              end,
    <<?ETF_VERSION, ?ETF_MAP, (5 + map_size(Varying)):32, Fixed/binary, ?ETF_BINARY, (length(?CREATED_AT)):32,
      ?CREATED_AT, Created/binary, (pairs(Varying))/binary>>.

%% @doc As `build/3', extending a lineage (docs/format.md section 2.1) when
%% `Opts' has `parent' (the metadata map of the frame this value came from,
%% as `tether:inspect/1' gives it, or its lineage list) or `step' (a binary
%% naming this write). This node's entry comes first, with `step' and `at'
%% when a step is named, then the parent's lineage unchanged. `stream' (a
%% map) adds the `stream' entry of a stream chunk (docs/format.md §9).
%%
%% ```
%% {ok, M} = tether_meta:decode(tether_meta:build(<<"etf">>, #{}, #{}, #{step => <<"enrich">>})),
%% [#{<<"step">> := <<"enrich">>} | _] = maps:get(<<"lineage">>, M).
%% '''
-spec build(binary(), map(), map(), map()) -> binary().
build(Name, TypeInfo, User, #{parent := _} = Opts) -> extended(Name, TypeInfo, User, Opts);
build(Name, TypeInfo, User, #{step := _} = Opts) -> extended(Name, TypeInfo, User, Opts);
build(Name, TypeInfo, User, #{stream := Stream}) when is_map(Stream) ->
    spliced(Name, TypeInfo, User, #{<<"stream">> => Stream});
build(Name, TypeInfo, User, _Opts) -> build(Name, TypeInfo, User).

extended(Name, TypeInfo, User, Opts) ->
    Now = os:system_time(microsecond),
    Own0 = own_entry(Name),
    Own = case maps:get(step, Opts, undefined) of
              undefined -> Own0;
              Step when is_binary(Step) -> Own0#{<<"step">> => Step, <<"at">> => Now};
              Bad -> erlang:error({badarg, {step, Bad, <<"a step is a binary, e.g. <<\"normalize\">>">>}})
          end,
    Parent = case maps:get(parent, Opts, []) of
                 #{<<"lineage">> := L} when is_list(L) -> L;
                 L when is_list(L) -> L;
                 _ -> []
             end,
    Meta0 = #{<<"format">> => Name, <<"schema">> => ?SCHEMA_VERSION, <<"producer">> => ?PRODUCER,
              <<"created_at">> => Now, <<"type">> => TypeInfo, <<"lineage">> => [Own | Parent]},
    Meta1 = case map_size(User) of 0 -> Meta0; _ -> Meta0#{<<"user">> => User} end,
    Meta = case Opts of #{stream := Stream} when is_map(Stream) -> Meta1#{<<"stream">> => Stream}; _ -> Meta1 end,
    term_to_binary(Meta, [{minor_version, ?ETF_MINOR_VERSION}]).

%% This node's entry in a lineage (docs/format.md section 2.1).
own_entry(Name) -> #{<<"producer">> => ?PRODUCER, <<"node">> => atom_to_binary(node()), <<"format">> => Name}.

%% @doc Decode metadata bytes: never creates atoms.
%%
%% ```
%% {ok, #{<<"run">> := 7}} = tether_meta:decode(term_to_binary(#{<<"run">> => 7})),
%% {error, {bad_etf, _}} = tether_meta:decode(<<131, 100, 0, 3, "zzq">>).  % an atom this node lacks
%% '''
-spec decode(binary()) -> {ok, map()} | {error, term()}.
decode(Bin) -> tether_etf:decode(Bin, true).

%% @doc Whether the metadata bytes of a frame of `Format' hold what every
%% frame's do (docs/format.md §2): a map with a `format' binary and a `type'
%% map. Python refuses a frame without them, whatever its format; so does
%% the BEAM, rather than decode a payload nothing describes. A `type' of the
%% wrong shape is a `bad_type_info' error, as the formats name theirs.
%%
%% Returns the decoded map, so that a reader decodes it once.
%%
%% ```
%% {ok, #{<<"type">> := #{}}} = tether_meta:check(raw, tether_meta:build(<<"raw">>, #{}, #{})),
%% {error, {bad_type_info, raw, _}} = tether_meta:check(raw, term_to_binary(#{<<"format">> => <<"raw">>})),
%% {error, {bad_metadata, _}} = tether_meta:check(raw, term_to_binary(#{<<"type">> => #{}})).
%% '''
-spec check(atom() | {unknown, non_neg_integer()}, binary()) -> {ok, map()} | {error, term()}.
check(Format, Bin) ->
    case decode(Bin) of
        {ok, #{<<"format">> := Name, <<"type">> := Type} = Meta} when is_binary(Name), is_map(Type) -> {ok, Meta};
        {ok, #{<<"format">> := Name}} when is_binary(Name) ->
            {error, {bad_type_info, Format, <<"frame metadata has no 'type' map">>}};
        {ok, Meta} when is_map(Meta) -> {error, {bad_metadata, <<"frame metadata has no 'format' binary">>}};
        {ok, _} -> {error, {bad_metadata, <<"frame metadata must be an ETF map">>}};
        Error -> Error
    end.

%% @doc The user map of a `user_packed' entry: its ETF term, inflated (zlib)
%% when compressed, at most its declared `size' and 16 MiB (as Python's
%% `Limits.max_metadata_size'), decoded `[safe]'.
%%
%% ```
%% Etf = term_to_binary(#{<<"run">> => 7}),
%% {ok, #{<<"run">> := 7}} = tether_meta:unpack_user(#{<<"encoding">> => <<"etf">>, <<"compression">> => <<"zlib">>,
%%                                                     <<"size">> => byte_size(Etf), <<"data">> => zlib:compress(Etf)}).
%% '''
-spec unpack_user(term()) -> {ok, map()} | {error, term()}.
unpack_user(#{<<"encoding">> := <<"etf">>, <<"compression">> := C, <<"size">> := Size, <<"data">> := Data})
  when is_integer(Size), Size >= 0, is_binary(Data) ->
    Raw = case C of
              <<"none">> when byte_size(Data) =:= Size -> {ok, Data};
              <<"none">> -> {error, {user_packed_size_mismatch, Size, byte_size(Data)}};
              <<"zlib">> -> tether_gzip:inflate_zlib(Data, Size, ?MAX_METADATA_SIZE);
              _ -> {error, {unknown_user_packed_compression, C}}
          end,
    case Raw of
        {ok, Etf} ->
            case tether_etf:decode(Etf, true) of
                {ok, User} when is_map(User) -> {ok, User};
                {ok, Other} -> {error, {user_metadata_not_a_map, Other}};
                Error -> Error
            end;
        Error -> Error
    end;
unpack_user(Other) -> {error, {bad_user_packed, Other}}.

pairs(Map) ->
    <<?ETF_VERSION, ?ETF_MAP, _:32, Pairs/binary>> = term_to_binary(Map, [{minor_version, ?ETF_MINOR_VERSION}]),
    Pairs.
