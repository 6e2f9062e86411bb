%% @doc ETF bytes from outside the node into terms, as {ok, _} or {error, _};
%% and versioned user types (`Tether.Type', docs/format.md "Versioned user
%% types") between their structs and their wire form
%% `#{'__struct__' => 'Elixir.Tether.Type', name => Name, version => V, value => Wire}'.
%%
%% A type module (Elixir: `use Tether.Type') exports `'__tether_type__'/0'
%% (`#{name, version, oldest, oldest_writable}'), `to_wire/1', `from_wire/1',
%% and, for older versions, `migrate/2' (`migrate(V, WireV) -> WireV+1') and
%% `downgrade/2' (`downgrade(V, WireV) -> WireV-1'). Registered modules live
%% in `persistent_term'; with none registered, nothing here walks a term.
-module(tether_etf).

-export([decode/2, decode/3, from_wire/1, to_wire/2, register_type/1, unregister_type/1, type_versions/0,
         registered_types/0, wire_atoms/0]).

-define(WIRE, 'Elixir.Tether.Type').
-define(REGISTRY, {?MODULE, types}).
%% The compiled search pattern of the wire atom's text, present only while a type is registered.
-define(PATTERN, {?MODULE, pattern}).
%% Payloads from this size on are searched for the wire atom before their term is walked.
-define(SEARCH_FROM, 256).

-type type_error() :: {newer_type, Name :: binary(), Found :: integer(), Known :: pos_integer()}
                    | {old_type, Name :: binary(), Found :: integer(), Oldest :: pos_integer()}
                    | {type_downgrade, Name :: binary(), Wanted :: pos_integer(), Oldest :: pos_integer()}
                    | {type_failed, Name :: binary(), Step :: term(), Error :: term()}
                    | {bad_type_term, binary()}.
-export_type([type_error/0]).

%% @doc `Safe' (for untrusted peers) refuses to create atoms; `false' is for
%% trusted peers such as our own worker. `Tether.Type' terms of registered
%% types become their structs, older versions migrated (see from_wire/1).
%%
%% ```
%% {ok, [1]} = tether_etf:decode(term_to_binary([1]), true).
%% '''
-spec decode(binary(), boolean()) -> {ok, term()} | {error, {bad_etf, binary()} | type_error()}.
decode(Bin, Safe) -> decode(Bin, Safe, []).

%% @doc As {@link decode/2}, for a term whose value sits at `Root' inside it
%% (a worker's reply, `{reply, Id, {ok, Result}}': `[2, 1]'): an unknown atom
%% is named by its path from there, with advice for a handler's result.
%%
%% ```
%% {ok, [1]} = tether_etf:decode(term_to_binary([1]), true, [2, 1]).
%% '''
-spec decode(binary(), boolean(), [non_neg_integer()]) ->
          {ok, term()} | {error, {bad_etf, binary()} | type_error()}.
decode(Bin, Safe, Root) ->
    case binary_to_term_(Bin, Safe, Root) of
        {ok, Term} ->
            case persistent_term:get(?PATTERN, none) of
                none -> {ok, Term};  % no type registered
                Pattern ->
                    case mentions_types(Bin, Pattern) of
                        true -> from_wire(Term);
                        false -> {ok, Term}
                    end
            end;
        Error -> Error
    end.

%% @doc The atoms Python writes for its own values (docs/types.md): the float
%% atoms Nx uses, `nil', and Elixir's core structs, which an Erlang node knows
%% only once Elixir's code is loaded. Naming them here creates them when this
%% module loads, so that a `[safe]' decode reads them on any node: `nan' and
%% `neg_infinity' existed only once a worker had started. Not Decimal's or
%% Complex's: a node without those packages answers that it lacks them.
%%
%% ```
%% true = lists:member(neg_infinity, tether_etf:wire_atoms()).
%% '''
-spec wire_atoms() -> [atom()].
wire_atoms() ->
    [nan, infinity, neg_infinity, nil, true, false, '__struct__', 'Elixir.Calendar.ISO',
     'Elixir.Date', 'Elixir.Time', 'Elixir.NaiveDateTime', 'Elixir.DateTime', 'Elixir.MapSet', 'Elixir.Range',
     'Elixir.Tether.Type', calendar, year, month, day, hour, minute, second, microsecond, time_zone, zone_abbr,
     utc_offset, std_offset, map, first, last, step, name, version, value].

binary_to_term_(Bin, true, Root) ->
    try {ok, binary_to_term(Bin, [safe])}
    catch error:_ -> {error, refused(tether_etf_atoms:find(Bin), Root)}
    end;
binary_to_term_(Bin, false, _) ->
    try {ok, binary_to_term(Bin)}
    catch error:_ -> {error, {bad_etf, <<"not valid ETF">>}}
    end.

%% Why a safe decode refused the bytes. An unknown atom inside a registered
%% type newer than this node's is that type's error: a new field is the most
%% common change a version makes. Inside an older one, it is most likely a
%% field or value that version had and the node's type no longer names.
refused(none, _) ->
    {bad_etf, <<"not valid ETF, or it names atoms this node does not know, or a map in it holds one key twice "
                "(from Python: a dict or set with a str and a bytes of the same content, one binary here)">>};
refused(#{atom := Atom, path := Path, types := Types}, Root) ->
    Reg = registry(),
    Around = [{Name, V, Mod, Mod:'__tether_type__'()} || {Name, V} <- Types, Mod <- [maps:get(Name, Reg, none)],
                                                          Mod =/= none],
    Where = tether_etf_atoms:path(under(Root, Path)),
    case [{newer_type, Name, V, Known} || {Name, V, _, #{version := Known}} <- Around, V > Known] of
        [Error | _] -> Error;
        [] -> unknown_atom(Atom, Where, Around, Root)
    end.

%% The innermost registered type around the atom decides.
unknown_atom(_, _, [{Name, V, _, #{oldest := Oldest}} | _], _) when V < Oldest -> {old_type, Name, V, Oldest};
unknown_atom(Atom, Where, [{Name, V, Mod, #{version := Known}} | _], Root) when V < Known ->
    Safe = case Root of
               [] -> <<"; or decode with safe: false from a trusted peer only">>;
               _ -> <<>>
           end,
    {bad_etf, iolist_to_binary(
                ["the atom '", Atom, "' at ", Where, " is not known to this node, which makes no atoms from a "
                 "peer's data. It is inside a value of type ", Name, " written at version ", integer_to_binary(V),
                 ", older than this node's ", integer_to_binary(Known), ": most likely a field (or value) that "
                 "version had and this node's type no longer names. Name the atom in the module's step from that "
                 "version, so that the node knows it: ", drop_hint(Mod, V, Atom), Safe, "."])};
unknown_atom(Atom, Where, _, Root) ->
    Fix = case Root of
              [] -> <<"send it as a string, or decode with safe: false from a trusted peer only.">>;
              _ -> <<"or have the handler return it as a str instead of a tether.Atom.">>
          end,
    {bad_etf, <<"the atom '", Atom/binary, "' at ", Where/binary, " is not known to this node, which makes "
                "no atoms from a peer's data. Load the code that uses it (a newer peer may have added it: "
                "upgrade this node), ", Fix/binary>>}.

%% The clause to write, in the module's own language.
drop_hint(Mod, V, Atom) ->
    Vs = integer_to_binary(V),
    case atom_to_binary(Mod) of
        <<"Elixir.", Short/binary>> ->
            Lit = case re:run(Atom, "^[a-z_][A-Za-z0-9_@]*[?!]?$", [unicode]) of
                      {match, _} -> [":", Atom];
                      nomatch -> [":\"", Atom, "\""]
                  end,
            [Short, ".migrate(", Vs, ", wire), e.g. Map.drop(wire, [", Lit, "]) for a dropped field"];
        Erl ->
            [Erl, ":migrate(", Vs, ", Wire), e.g. maps:without(['", Atom, "'], Wire) for a dropped field"]
    end.

%% A path from the value at Root, when it lies there (not in the envelope around it).
under([], Path) -> Path;
under([S | Root], [S | Path]) -> under(Root, Path);
under(_, Path) -> Path.

%% A wire term names the atom 'Elixir.Tether.Type' in its bytes, unless the
%% whole term is zlib-compressed (tag 80): then it may.
%% Small terms are cheaper to look through than to search (binary:match has a
%% fixed cost of about a microsecond).
mentions_types(<<131, 80, _/binary>>, _) -> true;
mentions_types(Bin, _) when byte_size(Bin) < ?SEARCH_FROM -> true;
mentions_types(Bin, Pattern) -> binary:match(Bin, Pattern) =/= nomatch.

%% ------------------------------------------------------------------ registry

%% @doc Register a type module (its `'__tether_type__'/0' names it); the last
%% registration of a name wins.
%%
%% ```
%% ok = tether_etf:register_type('Elixir.MyApp.Point').
%% '''
-spec register_type(module()) -> ok.
register_type(Mod) when is_atom(Mod) ->
    case code:ensure_loaded(Mod) =:= {module, Mod} andalso erlang:function_exported(Mod, '__tether_type__', 0) of
        false -> erlang:error({badarg, {not_a_tether_type, Mod}});
        true ->
            #{name := Name} = Mod:'__tether_type__'(),
            Old = maps:filter(fun(_, M) -> M =/= Mod end, registry()),
            put_registry(Old#{Name => Mod})
    end.

%% @doc Forget a type module (a no-op for one not registered).
%%
%% ```
%% ok = tether_etf:unregister_type('Elixir.MyApp.Point').
%% '''
-spec unregister_type(module()) -> ok.
unregister_type(Mod) ->
    put_registry(maps:filter(fun(_, M) -> M =/= Mod end, registry())).

put_registry(Reg) ->
    persistent_term:put(?REGISTRY, Reg),
    case Reg =:= #{} of
        true -> persistent_term:erase(?PATTERN);
        false -> persistent_term:put(?PATTERN, binary:compile_pattern(atom_to_binary(?WIRE)))
    end,
    ok.

%% @doc The version of every registered type, by name (what this node reads).
%%
%% ```
%% #{} = maps:filter(fun(_, _) -> false end, tether_etf:type_versions()).
%% '''
-spec type_versions() -> #{binary() => pos_integer()}.
type_versions() ->
    maps:map(fun(_, Mod) -> maps:get(version, Mod:'__tether_type__'()) end, registry()).

%% @doc Registered type modules, by name.
%%
%% ```
%% true = is_map(tether_etf:registered_types()).
%% '''
-spec registered_types() -> #{binary() => module()}.
registered_types() -> registry().

registry() -> persistent_term:get(?REGISTRY, #{}).

module_index() -> maps:fold(fun(N, M, Acc) -> Acc#{M => N} end, #{}, registry()).

%% ------------------------------------------------------------------ reading

%% @doc Every `Tether.Type' term inside `Term' whose name is registered, as
%% its module's struct: older versions migrated one step at a time, a newer
%% one an error. Unregistered names stay `Tether.Type' maps.
%%
%% ```
%% {ok, [1]} = tether_etf:from_wire([1]).
%% '''
-spec from_wire(term()) -> {ok, term()} | {error, type_error()}.
from_wire(Term) ->
    Reg = registry(),
    try {ok, up(Term, Reg)}
    catch throw:{?MODULE, Reason} -> {error, Reason}
    end.

up(#{'__struct__' := ?WIRE} = W, Reg) ->
    Value = up(maps:get(value, W, undefined), Reg),
    read_type(W#{value => Value}, Reg);
up(M, Reg) when is_map(M) -> walk_map(M, fun(X) -> up(X, Reg) end, read);
up(L, Reg) when is_list(L) -> up_list(L, Reg);
up(T, Reg) when is_tuple(T) -> list_to_tuple(up_list(tuple_to_list(T), Reg));
up(X, _) -> X.

up_list([H | T], Reg) -> [up(H, Reg) | up_list(T, Reg)];
up_list([], _) -> [];
up_list(Tail, Reg) -> up(Tail, Reg).

read_type(#{name := Name, version := V, value := Value} = W, Reg) when is_binary(Name), is_integer(V) ->
    case maps:get(Name, Reg, undefined) of
        undefined -> W;
        Mod ->
            #{version := Known, oldest := Oldest} = Mod:'__tether_type__'(),
            if
                V > Known -> throw({?MODULE, {newer_type, Name, V, Known}});
                V < Oldest -> throw({?MODULE, {old_type, Name, V, Oldest}});
                true ->
                    Current = lists:foldl(fun(From, Acc) -> step(Name, {migrate, From}, fun() -> Mod:migrate(From, Acc) end) end,
                                          Value, lists:seq(V, Known - 1)),
                    step(Name, from_wire, fun() -> Mod:from_wire(Current) end)
            end
    end;
read_type(_, _) ->
    throw({?MODULE, {bad_type_term, <<"a Tether.Type term needs a binary name, an integer version and a value">>}}).

%% Keys as well as values: a MapSet holds its members as keys, and Python
%% converts typed values wherever they sit. Only compound keys can hold a type,
%% so a map keyed by atoms, binaries or numbers costs no more than before; each
%% key is walked once, as values are. Two keys that become one would lose a
%% value (a reader refuses a map with a key twice): that is an error.
walk_map(M, F, Dir) ->
    Map = maps:map(fun(_, V) -> F(V) end, M),
    case maps:fold(fun(K, _, Acc) when is_map(K); is_tuple(K); is_list(K) -> [K | Acc];
                      (_, _, Acc) -> Acc
                   end, [], M) of
        [] -> Map;
        Keys -> rekey(Map, [{K, K1} || K <- Keys, K1 <- [F(K)], K1 =/= K], Dir)
    end.

%% All moved keys leave before any comes back: one may take another's old place.
rekey(Map, [], _) -> Map;
rekey(Map, Moved, Dir) ->
    Rest = maps:without([K || {K, _} <- Moved], Map),
    lists:foldl(fun({K, K1}, Acc) when is_map_key(K1, Acc) ->
                        Wire = case Dir of read -> K; write -> K1 end,
                        throw({?MODULE, {type_failed, wire_name(Wire), map_key, {same_key, Dir}}});
                   ({K, K1}, Acc) -> Acc#{K1 => maps:get(K, Map)}
                end, Rest, Moved).

%% The name of the first wire term inside a key, for a message.
wire_name(#{'__struct__' := ?WIRE, name := Name}) when is_binary(Name) -> Name;
wire_name(M) when is_map(M) -> wire_name(maps:to_list(M));
wire_name(T) when is_tuple(T) -> wire_name(tuple_to_list(T));
wire_name([H | T]) ->
    case wire_name(H) of
        <<"?">> -> wire_name(T);
        Name -> Name
    end;
wire_name(_) -> <<"?">>.

step(Name, Step, Fun) ->
    try Fun()
    catch
        throw:{?MODULE, _} = Ours -> throw(Ours);  % a nested type's error, already worded
        _:Reason -> throw({?MODULE, {type_failed, Name, Step, Reason}})
    end.

%% ------------------------------------------------------------------ writing

%% @doc Every struct of a registered type inside `Term' as its `Tether.Type'
%% wire term, at the version its reader knows: `Versions' maps type names to
%% the newest version the reader reads (empty: each type's own version).
%%
%% ```
%% {ok, [1]} = tether_etf:to_wire([1], #{}).
%% '''
-spec to_wire(term(), #{binary() => pos_integer()}) -> {ok, term()} | {error, type_error()}.
to_wire(Term, Versions) ->
    case registry() of
        R when R =:= #{} -> {ok, Term};
        _ ->
            Index = module_index(),
            try {ok, down(Term, Index, Versions)}
            catch throw:{?MODULE, Reason} -> {error, Reason}
            end
    end.

down(#{'__struct__' := Mod} = S, Index, Vs) when is_map_key(Mod, Index) -> write_type(S, Mod, Index, Vs);
down(M, Index, Vs) when is_map(M) -> walk_map(M, fun(X) -> down(X, Index, Vs) end, write);
down(L, Index, Vs) when is_list(L) -> down_list(L, Index, Vs);
down(T, Index, Vs) when is_tuple(T) -> list_to_tuple(down_list(tuple_to_list(T), Index, Vs));
down(X, _, _) -> X.

down_list([H | T], Index, Vs) -> [down(H, Index, Vs) | down_list(T, Index, Vs)];
down_list([], _, _) -> [];
down_list(Tail, Index, Vs) -> down(Tail, Index, Vs).

write_type(S, Mod, Index, Vs) ->
    Name = maps:get(Mod, Index),
    #{version := Version, oldest_writable := Oldest} = Mod:'__tether_type__'(),
    Target = case maps:get(Name, Vs, Version) of
                 %% Not an integer: term order would make min(3, "2") 3, silently the newest.
                 Wanted when not is_integer(Wanted) -> throw({?MODULE, {type_downgrade, Name, Wanted, Oldest}});
                 Wanted -> min(Version, Wanted)
             end,
    Target >= Oldest orelse throw({?MODULE, {type_downgrade, Name, Target, Oldest}}),
    Wire = down(step(Name, to_wire, fun() -> Mod:to_wire(S) end), Index, Vs),
    Out = lists:foldl(fun(From, Acc) -> step(Name, {downgrade, From}, fun() -> Mod:downgrade(From, Acc) end) end,
                      Wire, lists:seq(Version, Target + 1, -1)),
    #{'__struct__' => ?WIRE, name => Name, version => Target, value => Out}.
