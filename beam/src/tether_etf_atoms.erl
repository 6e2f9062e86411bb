%% @doc Why a safe decode refused ETF bytes: the first atom this node does not
%% know, where it sits (`$.rows[3].kind'), and the versioned user types
%% (`Tether.Type' wire maps) around it, so that a newer type's new field is
%% reported as the newer type it is.
%%
%% `binary_to_term(_, [safe])' only says `badarg'. This walks the bytes
%% without creating an atom: names are compared with `binary_to_existing_atom',
%% and only small values (a map key, a type's name and version) are decoded.
%% It runs after a refusal only, so the decode path pays nothing for it.
-module(tether_etf_atoms).

-export([find/1, path/1]).

-define(MAX_DEPTH, 1000).

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
        _ -> none
    catch
        throw:{?MODULE, Found = #{path := {_, Path}}} -> Found#{path := lists:reverse(Path)};
        throw:{?MODULE, bad} -> none;
        error:_ -> none
    end;
find(_) -> none.

%% @doc A path as tether writes paths in messages.
%%
%% ```
%% <<"$.rows[3].price">> = tether_etf_atoms:path([{key, rows}, 3, {key, <<"price">>}]).
%% '''
-spec path([segment()]) -> binary().
path(Segments) -> iolist_to_binary(["$" | [segment(S) || S <- Segments]]).

segment(I) when is_integer(I) -> ["[", integer_to_binary(I), "]"];
segment({key, K}) when is_atom(K) -> segment({key, atom_to_binary(K)});
segment({key, K}) when is_binary(K) ->
    case re:run(K, "^[A-Za-z_][A-Za-z0-9_]*$", [unicode]) of
        {match, _} -> [".", K];
        nomatch -> io_lib:format("[~0tp]", [K])
    end;
segment({key, K}) -> io_lib:format("[~0tp]", [K]);
segment(map_key) -> " (a map key)";
segment(node) -> " (the node of a pid, port or reference)";
segment(tail) -> " (a list's tail)".

%% ------------------------------------------------------------------ walking

%% term(Bytes, Path, Mode) -> the bytes after one term. Mode `check' throws at
%% the first unknown atom; `skip' passes over them (the rest of a map whose
%% fields are read after the atom was found).
term(<<97, _, R/binary>>, _, _) -> R;
term(<<98, _:32, R/binary>>, _, _) -> R;
term(<<70, _:64, R/binary>>, _, _) -> R;
term(<<99, _:31/binary, R/binary>>, _, _) -> R;
term(<<Tag, Len:16, Name:Len/binary, R/binary>>, P, M) when Tag =:= 100; Tag =:= 118 ->
    atom(Tag, Name, P, M), R;
term(<<Tag, Len, Name:Len/binary, R/binary>>, P, M) when Tag =:= 115; Tag =:= 119 ->
    atom(Tag, Name, P, M), R;
term(<<104, N, R/binary>>, P, M) -> elements(R, 0, N, P, M);
term(<<105, N:32, R/binary>>, P, M) -> elements(R, 0, N, P, M);
term(<<106, R/binary>>, _, _) -> R;
term(<<107, Len:16, _:Len/binary, R/binary>>, _, _) -> R;
term(<<108, N:32, R/binary>>, P, M) -> term(elements(R, 0, N, P, M), in(tail, P), M);
term(<<109, Len:32, _:Len/binary, R/binary>>, _, _) -> R;
term(<<77, Len:32, _, _:Len/binary, R/binary>>, _, _) -> R;
term(<<110, N, _, _:N/binary, R/binary>>, _, _) -> R;
term(<<111, N:32, _, _:N/binary, R/binary>>, _, _) -> R;
term(<<116, N:32, R/binary>>, P, M) -> pairs(R, N, P, M, #{});
term(<<88, R/binary>>, P, M) -> drop(12, term(R, in(node, P), M));       % NEW_PID
term(<<103, R/binary>>, P, M) -> drop(9, term(R, in(node, P), M));       % PID
term(<<89, R/binary>>, P, M) -> drop(8, term(R, in(node, P), M));        % NEW_PORT
term(<<120, R/binary>>, P, M) -> drop(12, term(R, in(node, P), M));      % V4_PORT
term(<<102, R/binary>>, P, M) -> drop(5, term(R, in(node, P), M));       % PORT
term(<<90, N:16, R/binary>>, P, M) -> drop(4 + 4 * N, term(R, in(node, P), M));  % NEWER_REFERENCE
term(<<114, N:16, R/binary>>, P, M) -> drop(1 + 4 * N, term(R, in(node, P), M)); % NEW_REFERENCE
term(<<113, R/binary>>, P, M) -> term(term(term(R, P, M), P, M), P, M);  % EXPORT: module, function, arity
term(_, _, _) -> throw({?MODULE, bad}).                                 % a fun, a compressed term, garbage

%% One level down. A path deeper than MAX_DEPTH is not worth walking for a
%% message (the bytes may be a few MB of nested lists): the plain one does.
in(_, {D, _}) when D >= ?MAX_DEPTH -> throw({?MODULE, bad});
in(Seg, {D, Segs}) -> {D + 1, [Seg | Segs]}.

drop(N, Bin) ->
    <<_:N/binary, R/binary>> = Bin,
    R.

atom(_, _, _, skip) -> ok;
atom(Tag, Name, P, check) ->
    Text = case Tag of
               T when T =:= 100; T =:= 115 -> unicode:characters_to_binary(Name, latin1);
               _ -> Name
           end,
    try binary_to_existing_atom(Text, utf8) of
        _ -> ok
    catch error:badarg -> throw({?MODULE, #{atom => Text, path => P, types => []}})
    end.

elements(R, N, N, _, _) -> R;
elements(R, I, N, P, M) -> elements(term(R, in(I, P), M), I + 1, N, P, M).

%% A map's pairs. The small fields of a type wire map (`__struct__', `name',
%% `version') are kept as they pass; an unknown atom found in a value is
%% rethrown with this map's type, once the rest of its pairs are read.
pairs(R, 0, _, _, _) -> R;
pairs(R, N, P, M, Fields) ->
    R1 = term(R, in(map_key, P), M),
    Key = small(R, R1),
    try term(R1, in({key, Key}, P), M) of
        R2 -> pairs(R2, N - 1, P, M, keep(Key, R1, R2, Fields))
    catch throw:{?MODULE, Found = #{types := Types}} when M =:= check ->
        All = fields(skip_value(R1), N - 1, Fields),
        throw({?MODULE, Found#{types := Types ++ type_of(All)}})
    end.

skip_value(R1) -> term(R1, {0, []}, skip).

fields(_, 0, Fields) -> Fields;
fields(R, N, Fields) ->
    R1 = term(R, {0, []}, skip),
    R2 = term(R1, {0, []}, skip),
    fields(R2, N - 1, keep(small(R, R1), R1, R2, Fields)).

keep(Key, From, To, Fields) when Key =:= '__struct__'; Key =:= name; Key =:= version ->
    Fields#{Key => small(From, To)};
keep(_, _, _, Fields) -> Fields.

type_of(#{'__struct__' := 'Elixir.Tether.Type', name := Name, version := V}) when is_binary(Name), is_integer(V) ->
    [{Name, V}];
type_of(_) -> [].

%% The term between two points of the bytes, when it is small and decodes
%% safely (a key, a name, a version); `undefined' otherwise.
small(From, To) ->
    Len = byte_size(From) - byte_size(To),
    case Len =< 256 of
        true ->
            <<Bytes:Len/binary, _/binary>> = From,
            try binary_to_term(<<131, Bytes/binary>>, [safe])
            catch error:_ -> undefined
            end;
        false -> undefined
    end.
