%% @doc Embedded frames (docs/format.md §8): whole tether frames that sit
%% anywhere inside call arguments and results.
%%
%% Going out, {@link table/1} marks rows or columns that Python receives as a
%% `pyarrow.Table'. Coming back, {@link resolve/2} replaces
%% `{'$tether', Frame}' and `{'$tether_shm', Path, Offset, Len}' by what the
%% frame holds: the tensor map of an ndarray, the Arrow IPC bytes of a table,
%% the binary of a raw frame.
-module(tether_embed).

-include_lib("kernel/include/file.hrl").

-export([table/1, resolve/2, resolve/3]).

%% `read_time': native time units spent reading frames out of shared memory.
-type stats() :: #{shm_bytes := non_neg_integer(), frame_bytes := non_neg_integer(),
                   read_time := non_neg_integer()}.
-export_type([stats/0]).

%% Frames inside decoded frames, at most: a reply in shared memory whose
%% large values are frames of their own is two levels. Deeper is a forged
%% chain (each level decoded again: quadratic work), or a frame that names
%% itself by path, which would be read forever.
-define(MAX_FRAME_NESTING, 8).

%% @doc Mark rows (a list of maps) or columns (a map of equal-length lists) to
%% arrive in Python as a `pyarrow.Table'. Anything else is a `badarg' error.
%%
%% ```
%% {'$tether_table', _} = tether_embed:table([#{id => 1}, #{id => 2}]).
%% {'$tether_table', _} = tether_embed:table(#{id => [1, 2]}).
%% '''
-spec table([map()] | #{term() => list()}) -> {'$tether_table', binary()}.
table(Rows) when is_list(Rows) ->
    lists:all(fun is_map/1, Rows) orelse
        erlang:error(badarg, [Rows], [{error_info, #{cause => <<"rows must be a list of maps">>}}]),
    {'$tether_table', term_to_binary(Rows)};
table(Columns) when is_map(Columns) ->
    lists:all(fun is_list/1, maps:values(Columns)) orelse
        erlang:error(badarg, [Columns], [{error_info, #{cause => <<"columns must be a map of lists">>}}]),
    %% Checked here, where the caller can read why, rather than in Python during the call.
    length(lists:usort([length(C) || C <- maps:values(Columns)])) =< 1 orelse
        erlang:error(badarg, [Columns], [{error_info, #{cause => <<"columns must all have the same length">>}}]),
    {'$tether_table', term_to_binary(Columns)};
table(Other) ->
    erlang:error(badarg, [Other]).

%% @doc Replace every embedded frame in `Term' by its decoded value.
%% `AllowShm(Path)' says whether a shared-memory path may be read (the worker
%% accepts only its Python's regions). Returns the bytes read from frames.
%% Errors: what tether:decode/1 returns for a frame that does not decode,
%% `{embedded_shm, Path, Why}' for a region that cannot be read,
%% `{refused_shm_path, Path}'. The stats say how many bytes came from
%% shared memory and from frames in the term, and how long reading took.
%%
%% ```
%% Raw = iolist_to_binary(tether:encode(<<"abc">>, #{format => raw})),
%% {ok, [1, <<"abc">>], #{shm_bytes := 0}} = tether_embed:resolve([1, {'$tether', Raw}], fun(_) -> false end),
%% {error, {refused_shm_path, <<"/etc/passwd">>}} =
%%     tether_embed:resolve({'$tether_shm', <<"/etc/passwd">>, 0, 10}, fun(_) -> false end).
%% '''
-spec resolve(term(), fun((binary()) -> boolean())) -> {ok, term(), stats()} | {error, term()}.
resolve(Term, AllowShm) -> resolve(Term, AllowShm, fun tether:read_frame/3).

%% @doc {@link resolve/2}, reading regions with `Read(Path, Offset, Len)'
%% (`{ok, Frame}' or `{error, Reason}'): the worker bounds each read by the
%% call's deadline.
-spec resolve(term(), fun((binary()) -> boolean()),
              fun((binary(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | {error, term()})) ->
          {ok, term(), stats()} | {error, term()}.
resolve(Term, AllowShm, Read) ->
    Zero = #{shm_bytes => 0, frame_bytes => 0, read_time => 0},
    case has_embedded(Term) of
        false -> {ok, Term, Zero};
        true ->
            try walk(Term, {{AllowShm, Read}, 0}, Zero#{left => #{}}) of
                {Value, Stats} -> {ok, Value, maps:remove(left, Stats)}
            catch throw:{?MODULE, Reason} -> {error, Reason}
            end
    end.

%% Most results hold no frame: one pass that allocates nothing decides.
has_embedded({'$tether', F}) when is_binary(F) -> true;
has_embedded({'$tether_shm', P, O, L}) when is_binary(P), is_integer(O), is_integer(L) -> true;
has_embedded([H | T]) -> has_embedded(H) orelse has_embedded(T);
has_embedded(T) when is_tuple(T) -> has_embedded_tuple(T, tuple_size(T));
has_embedded(M) when is_map(M) -> has_embedded_map(maps:iterator(M));
has_embedded(_) -> false.

has_embedded_tuple(_, 0) -> false;
has_embedded_tuple(T, N) -> has_embedded(element(N, T)) orelse has_embedded_tuple(T, N - 1).

has_embedded_map(I) ->
    case maps:next(I) of
        {_K, V, Next} -> has_embedded(V) orelse has_embedded_map(Next);
        none -> false
    end.

walk({'$tether', Frame}, A, Stats) when is_binary(Frame) ->
    inner(decoded(tether:decode(Frame)), A, add(frame_bytes, byte_size(Frame), Stats));
walk({'$tether_shm', Path, Offset, Len}, A = {{AllowShm, Read}, _}, Stats)
  when is_binary(Path), is_integer(Offset), is_integer(Len) ->
    AllowShm(Path) orelse throw({?MODULE, {refused_shm_path, Path}}),
    Stats1 = spend(Path, Len, Stats),
    T0 = erlang:monotonic_time(),
    case Read(Path, Offset, Len) of
        {ok, Frame} ->
            Stats2 = add(read_time, erlang:monotonic_time() - T0, add(shm_bytes, Len, Stats1)),
            inner(decoded(tether:decode(Frame)), A, Stats2);
        {error, Reason} -> throw({?MODULE, {embedded_shm, Path, Reason}})
    end;
walk([H | T], A, S0) ->
    {H1, S1} = walk(H, A, S0),
    {T1, S2} = walk(T, A, S1),
    {[H1 | T1], S2};
walk(T, A, S0) when is_tuple(T) ->
    {L, S1} = lists:mapfoldl(fun(E, S) -> walk(E, A, S) end, S0, tuple_to_list(T)),
    {list_to_tuple(L), S1};
walk(M, A, S0) when is_map(M) ->
    {L, S1} = lists:mapfoldl(fun({K, V}, S) -> {V1, S2} = walk(V, A, S), {{K, V1}, S2} end,
                             S0, maps:to_list(M)),
    {maps:from_list(L), S1};
walk(X, _, S) -> {X, S}.

%% A frame's value may itself hold embedded frames: a reply too large to go
%% inline travels as one frame in shared memory, and the large values inside
%% it keep their own `{'$tether_shm', ...}' references (valid until the next
%% call, so they are read now, like any other).
inner(Value, {Access, Depth}, Stats) ->
    case has_embedded(Value) of
        true when Depth >= ?MAX_FRAME_NESTING ->
            throw({?MODULE, {embedded_too_deep, ?MAX_FRAME_NESTING}});
        true -> walk(Value, {Access, Depth + 1}, Stats);
        false -> {Value, Stats}
    end.

%% What one reply may read from a region: its size, once. Python writes each
%% value once; references that name the same bytes again (a list of a
%% million references to one file, or frames of references to frames of
%% them) would make the node read and hold far more than Python wrote.
spend(Path, Len, Stats = #{left := Left}) ->
    Have = case Left of
               #{Path := N} -> N;
               _ -> region_size(Path)
           end,
    Len =< Have orelse throw({?MODULE, {embedded_shm, Path, {reads_past_region, Len, Have}}}),
    Stats#{left := Left#{Path => Have - Len}}.

region_size(Path) ->
    case file:read_file_info(Path, [raw]) of
        {ok, #file_info{size = Size}} when is_integer(Size) -> Size;
        {error, Reason} -> throw({?MODULE, {embedded_shm, Path, Reason}})
    end.

%% A frame that does not decode fails the call with tether:decode/1's own
%% reason, whichever route it took (e.g. `{bad_etf, _}' for unknown atoms).
decoded({ok, Value}) -> Value;
decoded({error, Reason}) -> throw({?MODULE, Reason}).

add(Key, N, Stats) -> Stats#{Key := maps:get(Key, Stats) + N}.
