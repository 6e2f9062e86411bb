%% @doc Why a safe decode refused ETF bytes: the first atom this node does not
%% know, where it sits (`$.rows[3].kind'), and the versioned user types
%% (`Tether.Type' wire maps) around it, so that a newer type's new field is
%% reported as the newer type it is.
%%
%% `binary_to_term(_, [safe])' only says `badarg'. This walks the bytes once,
%% without creating an atom: names are compared with `binary_to_existing_atom',
%% and only small values (a map key, a type's name and version) are decoded.
%% After the atom is found the walk goes on without checking atoms, only as
%% far as the maps around it end (their type fields may come after it), and
%% no further. It runs after a refusal only, so the decode path pays nothing.
-module(tether_etf_atoms).

-export([find/1, path/1]).

%% Deeper than this, the plain refusal stands: a path of a thousand steps helps nobody.
-define(MAX_DEPTH, 1000).
%% A map key or field value larger than this is not decoded to name it.
-define(SMALL, 256).

-type segment() :: non_neg_integer() | {key, term()} | map_key | node | tail.
-type found() :: #{atom := binary(), path := [segment()], types := [{binary(), integer()}]}.
-export_type([found/0]).

%% @doc The first unknown atom in `Bin' (ETF with its 131 version byte), with
%% its path from the root and the `{Name, Version}' of each type wire map
%% around it, innermost first; `none' when every atom is known or the bytes
%% are not ETF this can walk (a compressed term, a fun).
%%
%% ```
%% none = tether_etf_atoms:find(term_to_binary(#{a => [1]})).
%% Bin = <<131, 116, 1:32, 109, 4:32, "kind", 119, 5, "zzqxw">>,  % #{<<"kind">> => zzqxw}
%% #{atom := <<"zzqxw">>, path := [{key, <<"kind">>}], types := []} = tether_etf_atoms:find(Bin).
%% '''
-spec find(binary()) -> found() | none.
find(<<131, Rest/binary>>) ->
    try term(Rest, {0, []}, check) of
        {_, check} -> none;
        {_, {found, Found}} -> Found
    catch
        throw:{?MODULE, {done, Found}} -> Found;
        throw:{?MODULE, bad} -> none;
        error:_ -> none
    end;
find(_) -> none.

%% @doc A path as tether writes paths in messages.
%%
%% ```
%% <<"$.rows[3].price">> = tether_etf_atoms:path([{key, rows}, 3, {key, <<"price">>}]).
%% <<"$.a (in a map key, at [0])">> = tether_etf_atoms:path([{key, a}, map_key, 0]).
%% '''
-spec path([segment()]) -> binary().
path(Segments) ->
    {Outer, Inner} = lists:splitwith(fun(S) -> S =/= map_key end, Segments),
    In = case Inner of
             [] -> [];
             [map_key] -> " (a map key)";
             [map_key | Rest] -> [" (in a map key, at ", [segment(S) || S <- Rest], ")"]
         end,
    unicode:characters_to_binary(["$", [segment(S) || S <- Outer], In]).

segment(I) when is_integer(I) -> ["[", integer_to_binary(I), "]"];
segment({key, K}) when is_atom(K) -> segment({key, atom_to_binary(K)});
segment({key, K}) when is_binary(K) ->
    case is_text(K) andalso re:run(K, "^[A-Za-z_][A-Za-z0-9_]*$", [unicode]) of
        {match, _} -> [".", K];
        nomatch -> io_lib:format("[~0tp]", [K]);
        false -> io_lib:format("[~w]", [K])  % not UTF-8: its bytes
    end;
segment({key, {large, Size}}) -> io_lib:format("[<a key of ~b bytes>]", [Size]);
segment({key, K}) -> io_lib:format("[~0tp]", [K]);
segment(node) -> " (the node of a pid, port or reference)";
segment(tail) -> " (a list's tail)".

is_text(B) -> unicode:characters_to_binary(B) =:= B.

%% ------------------------------------------------------------------ walking

%% term(Bytes, Path, State) -> {the bytes after one term, State}. State is
%% `check' until an unknown atom is found, then `{found, Found}': atoms are
%% no longer checked, and containers with no map around them stop the walk.
term(<<97, _, R/binary>>, _, S) -> {R, S};
term(<<98, _:32, R/binary>>, _, S) -> {R, S};
term(<<70, _:64, R/binary>>, _, S) -> {R, S};
term(<<99, _:31/binary, R/binary>>, _, S) -> {R, S};
term(<<Tag, _/binary>> = B, P, S) when Tag =:= 100; Tag =:= 118; Tag =:= 115; Tag =:= 119 -> atom(B, P, S);
term(<<104, N, R/binary>>, P, S) -> elements(R, 0, N, P, S);
term(<<105, N:32, R/binary>>, P, S) -> elements(R, 0, N, P, S);
term(<<106, R/binary>>, _, S) -> {R, S};
term(<<107, Len:16, _:Len/binary, R/binary>>, _, S) -> {R, S};
term(<<108, N:32, R/binary>>, P, S) ->
    {R1, S1} = elements(R, 0, N, P, S),
    term(R1, in(tail, P), S1);
term(<<109, Len:32, _:Len/binary, R/binary>>, _, S) -> {R, S};
term(<<77, Len:32, _, _:Len/binary, R/binary>>, _, S) -> {R, S};
term(<<110, N, _, _:N/binary, R/binary>>, _, S) -> {R, S};
term(<<111, N:32, _, _:N/binary, R/binary>>, _, S) -> {R, S};
term(<<116, N:32, R/binary>>, P, S) -> map(R, N, P, S);
term(<<88, R/binary>>, P, S) -> node_then(12, R, P, S);       % NEW_PID
term(<<103, R/binary>>, P, S) -> node_then(9, R, P, S);       % PID
term(<<89, R/binary>>, P, S) -> node_then(8, R, P, S);        % NEW_PORT
term(<<120, R/binary>>, P, S) -> node_then(12, R, P, S);      % V4_PORT
term(<<102, R/binary>>, P, S) -> node_then(5, R, P, S);       % PORT
term(<<90, N:16, R/binary>>, P, S) -> node_then(4 + 4 * N, R, P, S);  % NEWER_REFERENCE
term(<<114, N:16, R/binary>>, P, S) -> node_then(1 + 4 * N, R, P, S); % NEW_REFERENCE
term(<<113, R/binary>>, P, S) ->                                      % EXPORT: module, function, arity
    {R1, S1} = atom(R, P, S),
    case atom(R1, P, S1) of
        {<<97, _, R2/binary>>, S2} -> {R2, S2};
        _ -> throw({?MODULE, bad})
    end;
term(_, _, _) -> throw({?MODULE, bad}).                               % a fun, a compressed term, garbage

node_then(N, R, P, S) ->
    {R1, S1} = atom(R, in(node, P), S),
    <<_:N/binary, R2/binary>> = R1,
    {R2, S1}.

atom(<<Tag, Len:16, Name:Len/binary, R/binary>>, P, S) when Tag =:= 100; Tag =:= 118 -> {R, known(Tag, Name, P, S)};
atom(<<Tag, Len, Name:Len/binary, R/binary>>, P, S) when Tag =:= 115; Tag =:= 119 -> {R, known(Tag, Name, P, S)};
atom(_, _, _) -> throw({?MODULE, bad}).

known(_, _, _, S = {found, _}) -> S;
known(Tag, Name, {_, Segs}, check) ->
    Text = case Tag of
               T when T =:= 100; T =:= 115 -> unicode:characters_to_binary(Name, latin1);
               _ -> Name
           end,
    is_text(Text) orelse throw({?MODULE, bad}),  % not UTF-8: no name worth showing
    try binary_to_existing_atom(Text, utf8) of
        _ -> check
    catch error:badarg -> {found, #{atom => Text, path => lists:reverse(Segs), types => []}}
    end.

%% One level down. A path deeper than MAX_DEPTH is not worth walking for a
%% message (the bytes may be a few MB of nested lists): the plain one does.
in(_, {D, _}) when D >= ?MAX_DEPTH -> throw({?MODULE, bad});
in(Seg, {D, Segs}) -> {D + 1, [Seg | Segs]}.

elements(R, N, N, P, S) -> {R, done_unless_in_map(P, S)};
elements(R, I, N, P, S) ->
    {R1, S1} = term(R, in(I, P), S),
    elements(R1, I + 1, N, P, S1).

%% Once the atom is found, only the maps around it have more to say (a type
%% map's fields after the one that holds it): with none, the walk stops.
done_unless_in_map({_, Segs}, {found, Found} = S) ->
    case lists:any(fun({key, _}) -> true; (map_key) -> true; (_) -> false end, Segs) of
        true -> S;
        false -> throw({?MODULE, {done, Found}})
    end;
done_unless_in_map(_, S) -> S.

%% A map's pairs. The small fields of a type wire map (`__struct__', `name',
%% `version') are kept as they pass; when the atom was found inside this map,
%% its type (if it is one) joins the found atom's types once the map ends.
map(R, N, P, S0) ->
    {R1, S1, Fields} = pairs(R, N, P, S0, #{}),
    S2 = case {S0, S1} of
             {check, {found, F = #{types := Types}}} -> {found, F#{types := Types ++ type_of(Fields)}};
             _ -> S1
         end,
    {R1, done_unless_in_map(P, S2)}.

pairs(R, 0, _, S, Fields) -> {R, S, Fields};
pairs(R, N, P, S, Fields) ->
    {R1, S1} = term(R, in(map_key, P), S),
    Key = small(R, R1),
    {R2, S2} = term(R1, in({key, Key}, P), S1),
    pairs(R2, N - 1, P, S2, keep(Key, R1, R2, Fields)).

keep(Key, From, To, Fields) when Key =:= '__struct__'; Key =:= name; Key =:= version ->
    Fields#{Key => small(From, To)};
keep(_, _, _, Fields) -> Fields.

type_of(#{'__struct__' := 'Elixir.Tether.Type', name := Name, version := V}) when is_binary(Name), is_integer(V) ->
    [{Name, V}];
type_of(_) -> [].

%% The term between two points of the bytes, when it is small and decodes
%% safely (a key, a name, a version); `{large, Size}' or `undefined' otherwise.
small(From, To) ->
    Len = byte_size(From) - byte_size(To),
    case Len =< ?SMALL of
        true ->
            <<Bytes:Len/binary, _/binary>> = From,
            try binary_to_term(<<131, Bytes/binary>>, [safe])
            catch error:_ -> undefined
            end;
        false -> {large, Len}
    end.
