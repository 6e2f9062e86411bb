%% @doc The node's table of pool routes, and the process that keeps it.
%%
%% A pool publishes the members a call may go to at once under its own pid,
%% and a caller reads that row without a message to the pool (see
%% tether_pool). One table serves every pool on the node, so that stopping a
%% pool costs one delete and a pool killed outright leaves nothing behind:
%% the keeper monitors each pool that publishes and deletes its row when it
%% dies. Per-pool `persistent_term' keys, used before, ran a scan of every
%% process on the node at each erase and leaked when a pool was killed.
%%
%% The keeper starts with the first pool and is shared by all. Its group
%% leader is `user', so that stopping the application that started it does
%% not take it down. If it dies anyway the table goes with it: readers find no
%% row and ask the pool process instead, and each pool, monitoring the
%% keeper, starts a new one and publishes again.
%%
%% The table also holds the node's pinning cursor (see tether_pool's
%% pin_offset), a counter the pools advance in turn, and the private
%% directory of each worker that asked (watch_dir/1): the keeper removes it
%% when the worker dies, so that a worker killed outright (`kill', a
%% supervisor's brutal_kill), whose terminate never runs, does not leave its
%% arguments file in memory until the node stops. A worker that stops as
%% usual removes its directory itself.
%%
%% It also holds each such worker's Python: its os pid and start time
%% (watch_python/2). When the worker dies, the keeper looks a grace later and
%% kills that Python if the same process still runs: a Python busy in a
%% handler when its worker was killed would otherwise run it to the end, and
%% one stopped (SIGSTOP) would never exit. The grace is REAP_AFTER ms, or
%% REAP_STOPPING when the worker stopped as usual with Python idle: that
%% Python exits by itself, and its atexit work (a last upload, say) is left
%% time to finish. A Python that exited is forgotten (forget_python/0).
-module(tether_routes).

-export([watch/0, watch_dir/1, watch_python/2, forget_python/0, publish/3, lookup/1, delete/1, next_cursor/1]).
%% The keeper's loop, called through the module so that a code load reaches a running keeper.
-export([keep/0]).

-define(TABLE, tether_pool_routes).
-define(KEEPER, tether_pool_routes_keeper).
%% Attempts to find or start a keeper, while an old one is still exiting.
-define(ENSURE_TRIES, 100).
%% How long watch/0 waits for the keeper to answer (it answers at once when it runs).
-define(WATCH_WAIT, 5000).
%% How long after its worker died a Python has to exit before the keeper kills it.
-define(REAP_AFTER, 1000).
-define(REAP_STOPPING, 30000).

%% @doc Make sure the keeper runs and watches the calling process, and
%% return once it does: the keeper, and a monitor of it whose `DOWN' means
%% watch again, publish again.
%%
%% ```
%% {Keeper, MRef} = tether_routes:watch(),
%% true = tether_routes:publish(self(), on_route, Keeper),
%% on_route = tether_routes:lookup(self()),
%% ok = tether_routes:delete(self()),
%% undefined = tether_routes:lookup(self()),
%% true = erlang:demonitor(MRef).
%% '''
-spec watch() -> {pid(), reference()}.
watch() -> watch(?ENSURE_TRIES).

watch(0) ->
    erlang:error({tether_routes, <<"the pool route keeper kept exiting before it watched this pool">>});
watch(Tries) ->
    Keeper = ensure(?ENSURE_TRIES),
    MRef = erlang:monitor(process, Keeper),
    Keeper ! {watch, self(), MRef},
    receive
        {watching, MRef} -> {Keeper, MRef};
        {'DOWN', MRef, process, Keeper, _} -> watch(Tries - 1)
    after ?WATCH_WAIT ->
        %% Suspended, or stuck: a pool's start fails with this, rather than hang.
        erlang:demonitor(MRef, [flush]),
        erlang:error({tether_routes, <<"the pool route keeper did not answer in 5 s">>})
    end.

%% @doc Have the keeper remove `Dir' (and what it holds) when the calling
%% process dies, whatever the reason; return once it will, with a monitor of
%% the keeper: its `DOWN' means the watch went with it, so watch again.
%%
%% ```
%% {ok, Dir} = tether_private:make_dir("/tmp"),
%% Parent = self(),
%% Pid = spawn(fun() -> {ok, _} = tether_routes:watch_dir(Dir), Parent ! watched, receive after infinity -> ok end end),
%% receive watched -> ok end,
%% exit(Pid, kill),
%% timer:sleep(100),
%% false = filelib:is_dir(Dir).
%% '''
-spec watch_dir(file:filename()) -> {ok, reference()} | {error, {tether_routes, binary()}}.
watch_dir(Dir) ->
    try watch_dir(Dir, ?ENSURE_TRIES)
    catch error:{tether_routes, _} = Reason -> {error, Reason}  % a worker's start fails with it, rather than crash
    end.

watch_dir(_Dir, 0) ->
    erlang:error({tether_routes, <<"the keeper kept exiting before it watched this worker's directory">>});
watch_dir(Dir, Tries) ->
    Keeper = ensure(?ENSURE_TRIES),
    MRef = erlang:monitor(process, Keeper),
    Keeper ! {watch_dir, self(), Dir, MRef},
    receive
        {watching, MRef} -> {ok, MRef};
        {'DOWN', MRef, process, Keeper, _} -> watch_dir(Dir, Tries - 1)
    after ?WATCH_WAIT ->
        erlang:demonitor(MRef, [flush]),
        erlang:error({tether_routes, <<"the keeper did not answer in 5 s">>})
    end.

%% @doc Name the calling worker's Python (its os pid, at each start), for the
%% keeper to kill if it outlives the worker: `running' (a grace of REAP_AFTER
%% ms) or `stopping' (the worker stops as usual, Python idle: REAP_STOPPING).
%% The worker must have called watch_dir/1, which makes the keeper watch it.
%% `false' when there is no table (the keeper is restarting; the worker
%% watches again and calls this again) or the process is gone.
-spec watch_python(pos_integer(), running | stopping) -> boolean().
watch_python(OsPid, How) when is_integer(OsPid), OsPid > 1 ->
    Grace = case How of running -> ?REAP_AFTER; stopping -> ?REAP_STOPPING end,
    case proc_start(OsPid) of
        undefined -> false;
        Start ->
            try ets:insert(?TABLE, {{python, self()}, {OsPid, Start, Grace}})
            catch error:badarg -> false
            end
    end.

%% @doc The calling worker's Python exited: nothing to kill.
-spec forget_python() -> ok.
forget_python() ->
    try ets:delete(?TABLE, {python, self()}), ok
    catch error:badarg -> ok
    end.

%% @doc Publish `Value' under `Key' (a pool's pid), in the table of
%% `Keeper', the keeper the caller watches. `stale' when another keeper
%% holds the table now (the caller's has died and another pool started the
%% next before the caller saw the `DOWN'): watch it first, so that the row
%% cannot outlive the caller. `false' when there is no table: the `DOWN'
%% follows.
-spec publish(pid(), term(), pid()) -> boolean() | stale.
publish(Key, Value, Keeper) ->
    case whereis(?KEEPER) of
        Keeper ->
            try ets:insert(?TABLE, {Key, Value}) of
                true ->
                    %% The keeper may have died and another started between the
                    %% two: then the row went into a table no one watches it in.
                    case whereis(?KEEPER) of
                        Keeper -> true;
                        _ -> stale
                    end
            catch error:badarg -> false
            end;
        undefined -> false;
        _Another -> stale
    end.

%% @doc The value published under `Key', or `undefined'.
-spec lookup(term()) -> term().
lookup(Key) ->
    try ets:lookup_element(?TABLE, Key, 2)
    catch error:badarg -> undefined
    end.

%% @doc Remove `Key''s row at once (a stopping pool), rather than when the
%% keeper sees it exit.
-spec delete(term()) -> ok.
delete(Key) ->
    try ets:delete(?TABLE, Key), ok
    catch error:badarg -> ok
    end.

%% @doc Advance the node's pinning cursor by `N' and return where it stood.
%%
%% ```
%% _ = tether_routes:watch(),
%% At = tether_routes:next_cursor(2),
%% true = tether_routes:next_cursor(1) >= At + 2.
%% '''
-spec next_cursor(pos_integer()) -> non_neg_integer().
next_cursor(N) ->
    try ets:update_counter(?TABLE, pin_cursor, N, {pin_cursor, 0}) - N
    catch error:badarg -> 0  % no keeper: no other pool to take turns with
    end.

%% ------------------------------------------------------------------ keeper

ensure(0) ->
    erlang:error({tether_routes, <<"the pool route keeper could not start: an old one did not exit">>});
ensure(Tries) ->
    case whereis(?KEEPER) of
        undefined ->
            Self = self(),
            {Pid, MRef} = spawn_monitor(fun() -> keeper(Self) end),
            receive
                {?KEEPER, Pid, ready} -> erlang:demonitor(MRef, [flush]), Pid;
                {'DOWN', MRef, process, Pid, _} ->
                    %% Another keeper holds the table (and is about to take the
                    %% name), or an old one is still exiting.
                    timer:sleep(1),
                    ensure(Tries - 1)
            end;
        Pid ->
            Pid
    end.

keeper(Starter) ->
    case whereis(user) of
        undefined -> ok;
        User -> group_leader(User, self())
    end,
    try ets:new(?TABLE, [named_table, public, set, {read_concurrency, true}, {write_concurrency, true}]) of
        _ ->
            try register(?KEEPER, self()) of
                true -> Starter ! {?KEEPER, self(), ready}, keep()
            catch
                error:badarg -> ok  % a keeper that is exiting still holds the name
            end
    catch
        error:badarg -> ok
    end.

%% Only the process that was watched: a pid the kernel gave to another
%% process since has another start time.
reap(OsPid, Start) ->
    _ = proc_start(OsPid) =:= Start andalso tether_python:signal(OsPid, kill),
    ok.

%% A process's start time (clock ticks after boot: /proc/<pid>/stat's 22nd
%% field, counted after the command name, which may hold spaces and parens).
%% Anything unexpected (no /proc, another layout) is `undefined': the keeper
%% and the worker call this, and neither may crash on it.
proc_start(OsPid) ->
    try
        {ok, Stat} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat"),
        [_, After] = string:split(Stat, <<") ">>, trailing),
        binary_to_integer(lists:nth(20, binary:split(After, [<<" ">>, <<"\n">>], [global, trim_all])))
    catch
        _:_ -> undefined
    end.

%% @private The keeper's loop.
keep() ->
    receive
        {watch, Pid, Ref} ->
            _ = erlang:monitor(process, Pid),
            Pid ! {watching, Ref},
            ?MODULE:keep();
        {watch_dir, Pid, Dir, Ref} ->
            _ = erlang:monitor(process, Pid),
            ets:insert(?TABLE, {{dir, Pid}, Dir}),
            Pid ! {watching, Ref},
            ?MODULE:keep();
        {'DOWN', _, process, Pid, _} ->
            ets:delete(?TABLE, Pid),
            case ets:take(?TABLE, {dir, Pid}) of
                [{_, Dir}] -> _ = file:del_dir_r(Dir);  % gone already when the worker stopped as usual
                [] -> ok
            end,
            case ets:take(?TABLE, {python, Pid}) of
                [{_, {OsPid, Start, Grace}}] -> erlang:send_after(Grace, self(), {reap, OsPid, Start});
                [] -> ok
            end,
            ?MODULE:keep();
        {reap, OsPid, Start} ->
            reap(OsPid, Start),
            ?MODULE:keep();
        _ ->
            ?MODULE:keep()
    end.
