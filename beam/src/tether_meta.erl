%% @doc Frame metadata: the ETF map between header and payload (docs/format.md §3).
-module(tether_meta).

-include("../include/tether.hrl").

-export([build/3, decode/1]).

-define(PRODUCER, <<"tether-beam/", ?TETHER_VSN>>).
-define(CREATED_AT, "created_at").

%% @doc The metadata of a frame of format `Name', spliced from encoded pairs:
%% an ETF map may list its pairs in any order. Format, schema, producer and
%% lineage repeat from frame to frame, so their encoding is kept (one small
%% persistent term per format name and node name).
-spec build(binary(), map(), map()) -> binary().
build(Name, TypeInfo, User) ->
    Key = {?MODULE, Name, node()},
    Fixed = case persistent_term:get(Key, undefined) of
                undefined ->
                    F = pairs(#{<<"format">> => Name, <<"schema">> => ?SCHEMA_VERSION,
                                <<"producer">> => ?PRODUCER,
                                <<"lineage">> => [#{<<"producer">> => ?PRODUCER,
                                                    <<"node">> => atom_to_binary(node()),
                                                    <<"format">> => Name}]}),
                    persistent_term:put(Key, F),
                    F;
                F -> F
            end,
    <<?ETF_VERSION, Created/binary>> = term_to_binary(os:system_time(microsecond)),
    Type = pairs(#{<<"type">> => TypeInfo}),
    %% Four fixed pairs, created_at and type; user only when given.
    case map_size(User) of
        0 -> <<?ETF_VERSION, ?ETF_MAP, 6:32, Fixed/binary, ?ETF_BINARY, (length(?CREATED_AT)):32,
               ?CREATED_AT, Created/binary, Type/binary>>;
        _ -> <<?ETF_VERSION, ?ETF_MAP, 7:32, Fixed/binary, ?ETF_BINARY, (length(?CREATED_AT)):32,
               ?CREATED_AT, Created/binary, Type/binary, (pairs(#{<<"user">> => User}))/binary>>
    end.

%% @doc Decode metadata bytes: never creates atoms.
-spec decode(binary()) -> {ok, map()} | {error, term()}.
decode(Bin) -> tether_etf:decode(Bin, true).

pairs(Map) ->
    <<?ETF_VERSION, ?ETF_MAP, _:32, Pairs/binary>> = term_to_binary(Map, [{minor_version, ?ETF_MINOR_VERSION}]),
    Pairs.
