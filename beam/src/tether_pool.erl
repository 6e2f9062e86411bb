%% @doc A pool of Python workers: calls run concurrently, one per member.
%%
%% A call goes straight to the member with the fewest calls routed to it (a
%% polling one among equals) and waits in that member's own queue when it is
%% busy: the caller reads the route the pool publishes (tether_routes), adds
%% one to the member's `atomics' count, and the member takes it off when the
%% call leaves it (answered, dropped or cancelled). So the pool process sends
%% and receives nothing per call, and a member sends its next call as soon as
%% a reply arrives. Measured on 2 cores with 8 callers, a pool of 2 went from
%% 16.6-17.2 to 14.0-14.6 us a call in most runs, the BEAM's own CPU per call
%% from 12.5 to 9.4-10 us, and a pool of 1 ran level with a lone worker
%% (23.4 against 23.3 us) instead of 27 us. A caller killed between counting
%% its call in and sending it leaves a count no call takes off: a member with
%% nothing to do resets it after a second (tether_worker's settle).
%%
%% When the members' queues hold `max_queue' calls and none is idle, a call
%% answers `{error, overloaded}' at once. Time spent waiting counts against
%% the call's timeout. A call queued at a member waits for the calls ahead of
%% it there, until a member with nothing to do asks that member for one back
%% (the oldest waiting): a member whose queue runs out asks the peer with the
%% most calls waiting, so a quick call does not wait out a long one while
%% another member is free. A member whose call timed out, and which Python has
%% not let go of yet, sends a call routed to it back while a peer is idle. A
%% member that is restarting sends routed calls back, and one that stops sends
%% back those it held. A call sent back is routed again (three times, then it
%% checks a member out).
%%
%% When no member is on the route (all checked out, starting or cancelling),
%% or the pool is named through `global' or `via', a call asks the pool
%% process for a member, and waits in its queue until one is on the route.
%% A call with a `checkout_timeout', and a transaction, check a member out
%% through the pool process: one with no calls routed to it, which leaves the
%% route while held, waiting in the pool's queue if needs be. While they wait,
%% the least loaded member leaves the route until its queue runs out, so
%% routed calls cannot starve them. The hold is exact: the pool takes the
%% member with a compare-and-swap of its count from 0 to HELD, and a caller
%% that read the route just before finds the count held as it counts its call
%% in, and goes elsewhere. Each of the pool's two queues holds at most
%% `max_queue' callers, as do the members' queues together.
%%
%% Members start together and `start_link/1' returns once every one has
%% answered its handshake, or `{error, Reason}' as
%% {@link tether_worker:start_link/1} does. A member that dies is replaced
%% (one killed outright is logged here, with its Python's `[tether, worker,
%% exit]' and the clearing of that Python's alerts, which it could not send);
%% one that cannot start again is retried with a growing delay (100 ms up to
%% 10 s). A member whose call timed out goes back on the route only once
%% Python has dropped the call (or been replaced).
%%
%% Only `spinners' members poll for their next call (the worker's `spin_us');
%% the others sleep in read() between calls. A polling Python holds a core
%% while it waits, and the pool's own traffic runs on the BEAM's schedulers:
%% measured on 2 cores, a pool of 2 whose two members polled served 8
%% callers at 20-26 us a call, against 17-19 us with one polling member; a
%% pool of 4 at 43 us against 21 us. An idle polling member is handed out
%% first, so a lone caller keeps meeting one awake.
-module(tether_pool).
-behaviour(gen_server).

-export([start_link/1, start/1, call/4, call/5, transaction/3, stop/1, status/1, child_spec/1]).
-export([init_server/1, init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, format_status/1]).
-export([held/1, busiest_peer/2, idle_peer/2]).

-define(BACKOFF_MIN, 100).
-define(BACKOFF_MAX, 10000).
-define(STOP_WAIT, 5000).

%% How often a pool with waiters looks for a member whose calls have run out:
%% every ms at first, then less often while none does (a long call), up to
%% ?DRAIN_POLL_MAX ms; again every ms once a waiter is served.
-define(DRAIN_POLL, 1).
-define(DRAIN_POLL_MAX, 64).
%% A checked-out member's count holds this (a compare-and-swap from 0), so a
%% caller that picked it from a route read just before sees a negative count
%% as it counts its call in, takes it back and picks again: the hold is exact.
%% Anything below HELD div 2 is held; a stray count or two either way is not.
-define(HELD, -(1 bsl 40)).

%% How many times a routed call is sent on to another member (its member was
%% cancelling, restarting or gone) before it checks one out instead.
-define(REROUTES, 3).

-record(member, {health = starting :: starting | ready | cancelling,
                 holder :: undefined | reference(),
                 spins = true :: boolean(),
                 %% Calls routed to it and not yet answered: callers add one, the
                 %% member takes it off (tether_worker's release).
                 load :: atomics:atomics_ref(),
                 %% Taken off the route so that its calls run out, for a waiter.
                 draining = false :: boolean(),
                 %% A polling member's CPU among the pool's (its --pin index).
                 pin_index :: undefined | non_neg_integer(),
                 %% Its ready Python and that Python's firing alerts, as the member last said:
                 %% the pool reports them if the member is killed before it can.
                 os_pid :: undefined | pos_integer(),
                 alerts = #{} :: map()}).
-record(wait, {ref, from, mref, deadline}).
-record(st, {worker_opts, size, max_queue, name,
             pin_offset :: undefined | non_neg_integer(),
             members = #{} :: #{pid() => #member{}},
             idle = [] :: [pid()],
             waiting = queue:new(), nwaiting = 0,
             %% Callers waiting for any member to be on the route (not for one of their own).
             routing = queue:new(), nrouting = 0,
             %% Members that poll: `spinners', at most `size', and 0 when spin_us is 0.
             polling = 0 :: non_neg_integer(),
             checkouts = #{} :: #{reference() => {pid(), reference()}},
             holders = #{} :: #{reference() => reference()},
             failures = 0,
             %% Why the last member could not start, while none has since: with no member left,
             %% a call is answered with it at once instead of waiting out its timeout.
             start_error = undefined :: term(),
             %% tether_routes' keeper, which holds the node's route table, and a monitor of it.
             keeper :: {pid(), reference()},
             drain_timer :: undefined | reference(),
             %% The members on the route last published: one that joins it is told to look for work.
             routed = [] :: [pid()],
             drain_every = ?DRAIN_POLL :: pos_integer()}).

-type pool() :: pid() | atom() | {global, term()} | {via, module(), term()}.
-export_type([pool/0]).

%% ------------------------------------------------------------------ API

%% @doc Start a pool linked to the caller. Options: a worker's options (see
%% {@link tether_worker:start_link/1}; `name' names the pool), plus `size'
%% (members, default the CPUs the node may run on, see
%% {@link tether_options:cpus/0}; not the schedulers, so `+S 1' changes nothing),
%% `max_queue' (callers that may wait for a member, default 100) and
%% `spinners' (members that poll for their next call for `spin_us'; the
%% others sleep in read(); default one fewer than the CPUs, at least 1; 0: none polls; more than `size': all do)
%% `pin' (default true: polling members keep to CPUs of their own and the
%% sleeping ones to the rest, when the pool has both; see pin_offset/4) and
%% `sched_batch' (default true: a pinned sleeping member serves under Linux's
%% SCHED_BATCH while its CPU has room; false: at the normal policy).
%%
%% ```
%% {ok, P} = tether_pool:start_link(#{modules => [<<"my_handlers">>], size => 4}).
%% '''
-spec start_link(map() | list()) -> {ok, pid()} | {error, term()}.
start_link(Opts) -> start(link, Opts).

%% @doc As {@link start_link/1}, not linked.
%%
%% ```
%% {ok, P} = tether_pool:start(#{modules => [<<"math">>], size => 2}),
%% {ok, 4.0} = tether_pool:call(P, <<"math">>, <<"sqrt">>, [16.0]),
%% ok = tether_pool:stop(P).
%% '''
-spec start(map() | list()) -> {ok, pid()} | {error, term()}.
start(Opts) -> start(nolink, Opts).

start(Link, Opts) ->
    case tether_options:pool(Opts) of
        {ok, Checked = #{python := Python}} ->
            case tether_python:find(Python) of
                {ok, _} -> tether_proc:start(Link, ?MODULE, maps:get(name, Checked, undefined), Checked);
                Error -> Error
            end;
        Error -> Error
    end.

%% @doc A child specification for a supervisor. Its id is the `name' option
%% when there is one (so two named pools can share a supervisor), else
%% `tether_pool'.
%%
%% ```
%% Spec = tether_pool:child_spec(#{name => {local, models}, modules => [<<"my_handlers">>]}),
%% #{id := {local, models}, start := {tether_pool, start_link, [_]}} = Spec.
%% '''
-spec child_spec(map() | list()) -> supervisor:child_spec().
child_spec(Opts) ->
    #{id => tether_options:child_id(Opts, ?MODULE), start => {?MODULE, start_link, [Opts]}, type => worker,
      shutdown => ?STOP_WAIT * 2}.

%% @doc `Module.Function(*Args)' on a free member, 5 s timeout.
%%
%% ```
%% {ok, 3} = tether_pool:call(P, <<"my_handlers">>, <<"add">>, [1, 2]).
%% '''
-spec call(pool(), iodata() | atom(), iodata() | atom(), list()) -> {ok, term()} | {error, term()}.
call(Pool, Mod, Fun, Args) -> call(Pool, Mod, Fun, Args, #{}).

%% @doc `Module.Function(*Args)' on a free member. `Opts' is a timeout in ms
%% or a map: `timeout' (the whole call, waiting included), `checkout_timeout'
%% (the wait for a member alone; `{error, checkout_timeout}'), `tables'.
%% Errors are those of {@link tether_worker:call/5}, plus `overloaded',
%% `{pool_down, Why}' (the pool process is gone) and `{no_worker, Why}' (no
%% member is left, and the last could not start: `Why' is its start error; the
%% pool goes on trying, and a call made once one starts is served).
-spec call(pool(), iodata() | atom(), iodata() | atom(), list(), timeout() | map() | list()) ->
          {ok, term()} | {error, term()}.
call(Pool, Mod, Fun, Args, Opts) ->
    case {tether_options:target(Mod, Fun, Args), tether_options:call(pool, Opts)} of
        {{ok, M, F}, {ok, Checked = #{timeout := Timeout, tables := Tables}}} ->
            Deadline = deadline(Timeout),
            Checkout = maps:get(checkout_timeout, Checked, none),
            tether_telemetry:span(#{module => M, function => F, pool => Pool},
                                  fun() -> pooled(Pool, M, F, Args, Tables, Deadline, Checkout) end);
        {{ok, _, _}, Error} -> Error;
        {Error, _} -> Error
    end.

%% Without a checkout timeout, a call goes straight to the least loaded
%% member on the route, and waits in that member's queue if it is busy: no
%% message to the pool, and the member sends its next call as soon as a reply
%% arrives. When no member is on the route (all held, starting or cancelling)
%% or the pool is named through global or via, the pool names one, at once or
%% when one is back. With a checkout timeout, whatever its length, the call
%% checks a member out: it runs on a member with nothing else to do.
pooled(Pool, M, F, Args, Tables, Deadline, none) ->
    routed(Pool, {M, F, Args, Tables, Deadline, {timeout, Deadline}}, ?REROUTES);
pooled(Pool, M, F, Args, Tables, Deadline, CheckoutMs) ->
    checked_out(Pool, M, F, Args, Tables, Deadline, checkout_deadline(Deadline, CheckoutMs)).

routed(Pool, Call = {_, _, _, _, Deadline, _}, Tries) ->
    case route(Pool) of
        {ok, Worker, Load} -> direct(Pool, Worker, Load, Call, Tries);
        {overloaded, Queued, Meta} ->
            tether_telemetry:execute([tether, pool, overloaded], #{queue_length => Queued}, Meta),
            {{error, overloaded}, #{}};
        none ->
            case wait_for_route(Pool, Deadline) of
                {ok, Worker, Load} -> direct(Pool, Worker, Load, Call, Tries);
                {error, Reason} -> {{error, Reason}, #{}}
            end
    end.

%% A member that was restarting or stopping sends a routed call back
%% (tether_reroute); one that died before the call reached it never saw it
%% (noproc). Either way the call was not run: route it again, or in the end
%% check a member out.
direct(Pool, Worker, Load, Call = {M, F, Args, Tables, Deadline, Checkout}, Tries) ->
    case tether_worker:request(Worker, M, F, Args, Tables, Deadline, none, Load) of
        {{error, Again}, _} when Again =:= tether_reroute; Again =:= {worker_down, noproc} ->
            case Tries of
                0 -> checked_out(Pool, M, F, Args, Tables, Deadline, Checkout);
                _ -> routed(Pool, Call, Tries - 1)
            end;
        Result -> served_by(Worker, Result)
    end.

%% Telemetry names the member that had the call as well as the pool.
served_by(Worker, {Result, Stats}) -> {Result, Stats#{worker => Worker}}.

%% Ask the pool for a member on the route, waiting (counted against the
%% call's deadline, and in the pool's queue of max_queue) until one is.
wait_for_route(Pool, Deadline) ->
    Ref = make_ref(),
    try gen_server:call(Pool, {route_wait, Ref, Deadline}, remaining(Deadline)) of
        {ok, Worker, Load} -> {ok, Worker, Load};
        {error, Reason} -> {error, Reason}
    catch
        exit:{timeout, {gen_server, call, _}} ->
            gen_server:cast(Pool, {abandon, Ref}),
            {error, timeout};
        exit:{Reason, {gen_server, call, _}} -> {error, {pool_down, Reason}}
    end.

checked_out(Pool, M, F, Args, Tables, Deadline, Checkout) ->
    Asked = erlang:monotonic_time(),
    case checkout(Pool, Checkout) of
        {ok, Worker, Ref} ->
            Waited = erlang:monotonic_time() - Asked,
            served_by(Worker, case tether_worker:request(Worker, M, F, Args, Tables, Deadline, {Pool, Ref}) of
                {{error, timeout}, _} = TimedOut ->
                    TimedOut;  % the member checks itself in once it has let go of the call
                {Result, Stats} when map_size(Stats) > 0 ->
                    gen_server:cast(Pool, {checkin, Ref}),
                    {Result, Stats#{queue_time => maps:get(queue_time, Stats, 0) + Waited}};
                Unanswered ->
                    gen_server:cast(Pool, {checkin, Ref}),
                    Unanswered
            end);
        {error, {timeout, Which}} -> {{error, Which}, #{}};
        {error, Reason} -> {{error, Reason}, #{}}
    end.

%% @doc Run `Fun(Worker)' with a member checked out for it: several calls on
%% one Python process, e.g. to keep state between them. `Timeout' bounds the
%% wait for a member. Returns what `Fun' returns, or `{error, overloaded}' /
%% `{error, checkout_timeout}' or `{error, {no_worker, Why}}' (see call/5).
%%
%% ```
%% {ok, 3} = tether_pool:transaction(P, fun(W) -> tether_worker:call(W, <<"m">>, <<"add">>, [1, 2]) end, 5000).
%% '''
-spec transaction(pool(), fun((pid()) -> Result), timeout()) -> Result | {error, term()}.
transaction(Pool, Fun, Timeout) ->
    case checkout(Pool, checkout_deadline(infinity, Timeout)) of
        {ok, Worker, Ref} ->
            try Fun(Worker)
            after gen_server:cast(Pool, {checkin, Ref})
            end;
        {error, {timeout, _}} -> {error, checkout_timeout};
        Error -> Error
    end.

%% @doc Stop the pool and every member (and their Python processes).
%%
%% ```
%% {ok, P} = tether_pool:start(#{modules => [<<"math">>], size => 2}),
%% ok = tether_pool:stop(P),
%% false = is_process_alive(P).
%% '''
-spec stop(pool()) -> ok.
stop(Pool) -> gen_server:stop(Pool, normal, ?STOP_WAIT * 2).

%% @doc Members and their state: `size', `workers' (pids); `idle', `busy'
%% (checked out, or running calls), `starting' and `cancelling', which count
%% each member once; `down' (members that could not start, waiting to be
%% tried again); `spinning' (members set to poll for their next call);
%% `queued' (calls waiting at members or in the pool).
%%
%% ```
%% {ok, P} = tether_pool:start(#{modules => [<<"math">>], size => 2}),
%% #{size := 2, idle := 2, busy := 0, down := 0, queued := 0, workers := [_, _]} = tether_pool:status(P),
%% ok = tether_pool:stop(P).
%% '''
-spec status(pool()) -> map().
status(Pool) -> gen_server:call(Pool, status).

%% ------------------------------------------------------------------ route

%% The members a call may go to at once, read without a message to the pool:
%% the pool publishes them (ready, not checked out, not draining; polling
%% members first) in the node's route table, under its pid (tether_routes).
%% No row (the pool is starting or stopping, or the keeper restarting): the
%% pool process answers.
route(Pool) ->
    case tether_routes:lookup(route_key(Pool)) of
        {Members, MaxQueue, Meta, _Peers} -> pick(Members, MaxQueue, Meta, 1);
        undefined -> none
    end.

route_key(Pid) when is_pid(Pid) -> Pid;
route_key(Name) when is_atom(Name) -> whereis(Name);
route_key(_) -> undefined.  % {global, _} and {via, _, _} go through the pool process

%% The least loaded member (the first of equals, so a polling one), unless
%% every member is busy and `MaxQueue' calls wait already. The caller counts
%% its call in at once, so callers that pick at the same instant spread over
%% the members; the member counts it out (tether_worker). Two callers may
%% still pick the same member: a count above the one read says so, and the
%% caller looks once more (a member left idle beside a queue would otherwise
%% wait for a peer to ask for a call back, tether_worker's give_back).
pick(Members, MaxQueue, Meta, Again) ->
    case least_loaded(Members, 1, none, 0, 0) of
        {none, _, _} -> none;
        {_, Least, Queued} when Least > 0, Queued >= MaxQueue -> {overloaded, Queued, Meta};
        {{Worker, Load}, Least, _} ->
            N = atomics:add_get(Load, 1, 1),
            case held(N) of
                true ->  % checked out since the route was read
                    atomics:sub(Load, 1, 1),
                    none;
                false when N > Least + 1, Again > 0 ->
                    atomics:sub(Load, 1, 1),
                    pick(Members, MaxQueue, Meta, Again - 1);
                false -> {ok, Worker, Load}
            end
    end.

least_loaded(Members, I, Best, Least, Queued) when I > tuple_size(Members) -> {Best, Least, Queued};
least_loaded(Members, I, Best, Least, Queued) ->
    Member = {_, Load} = element(I, Members),
    N = atomics:get(Load, 1),
    Queued1 = Queued + max(0, N - 1),
    case Best =:= none orelse N < Least of
        true -> least_loaded(Members, I + 1, Member, N, Queued1);
        false -> least_loaded(Members, I + 1, Best, Least, Queued1)
    end.

publish(S = #st{max_queue = MaxQueue}) ->
    Route = on_route(S),
    nudge_joined(Route, serve_routing(Route, put_route({Route, MaxQueue, overload_meta(S), peers(S)}, S))).

%% A member back on the route (checked in, ready after a cancel or a start, no
%% longer draining) asks its peers for a waiting call if it has none: it asks
%% only while on the route, where a call sent back can reach it.
nudge_joined(Route, S = #st{routed = Before}) ->
    Now = [Pid || {Pid, _} <- tuple_to_list(Route)],
    [Pid ! {tether_pool, settle} || Pid <- Now, not lists:member(Pid, Before)],
    S#st{routed = Now}.

%% A new keeper that this pool does not watch yet: watch it before the row
%% goes in, or a pool killed before it sees the old keeper's DOWN would
%% leave its row behind. No table: the keeper's DOWN follows, then this.
put_route(Row, S = #st{keeper = {Keeper, _}}) ->
    case tether_routes:publish(self(), Row, Keeper) of
        stale ->
            Watch = {Now, _} = tether_routes:watch(),
            _ = tether_routes:publish(self(), Row, Now),
            S#st{keeper = Watch};
        _ ->
            S
    end.

%% `[tether, pool, overloaded]''s metadata, whoever emits it.
overload_meta(S) -> #{pool => pool_ref(S), size => S#st.size, max_queue => S#st.max_queue}.

%% Members ready, not checked out and not draining, polling ones first.
on_route(#st{members = Members}) ->
    Open = lists:sort([{not Spins, Pid, Load}
                       || {Pid, #member{health = ready, holder = undefined, draining = false, spins = Spins,
                                        load = Load}} <- maps:to_list(Members)]),
    list_to_tuple([{Pid, Load} || {_, Pid, Load} <- Open]).

%% Members that may hold calls waiting in their queues, for a member with
%% nothing to do to ask one back: {Pid, Load, Running}, where Running is how
%% much of the count a call that Python runs makes (a cancelling member has
%% counted its call out already). Checked-out members are not among them.
peers(#st{members = Members}) ->
    list_to_tuple([{Pid, Load, case Health of ready -> 1; cancelling -> 0 end}
                   || {Pid, #member{health = Health, holder = undefined, load = Load}} <- maps:to_list(Members),
                      Health =/= starting]).

%% @private For a member of `Pool' with nothing to do: the peer with the most
%% calls waiting in its queue, to ask for one back, or `none'. Waiting calls
%% are those counted in beyond the one Python runs; a call on its way counts
%% too, and the peer, which has none to give, ignores the request. `none'
%% for a member off the route (held, draining, cancelling): a call sent back
%% could not reach it; the pool tells it to look again when it is back.
-spec busiest_peer(pid(), pid()) -> pid() | none.
busiest_peer(Pool, Self) ->
    case tether_routes:lookup(Pool) of
        {Route, _, _, Peers} ->
            case lists:keymember(Self, 1, tuple_to_list(Route)) of
                true -> busiest(tuple_to_list(Peers), Self, none, 0);
                false -> none
            end;
        undefined -> none
    end.

busiest([], _, Best, _) -> Best;
busiest([{Self, _, _} | Rest], Self, Best, Most) -> busiest(Rest, Self, Best, Most);
busiest([{Pid, Load, Running} | Rest], Self, Best, Most) ->
    N = atomics:get(Load, 1),
    case not held(N) andalso N - Running > Most of
        true -> busiest(Rest, Self, Pid, N - Running);
        false -> busiest(Rest, Self, Best, Most)
    end.

%% @private Whether another member of `Pool' is on the route with no calls:
%% a member that cannot run a call now (cancelling) sends it back to be
%% routed there instead of queueing it.
-spec idle_peer(pid(), pid()) -> boolean().
idle_peer(Pool, Self) ->
    case tether_routes:lookup(Pool) of
        {Route, _, _, _} -> lists:any(fun({Pid, Load}) -> Pid =/= Self andalso atomics:get(Load, 1) =:= 0 end,
                                      tuple_to_list(Route));
        undefined -> false
    end.

%% Callers that found the route empty get a member once there is one.
%% They are dealt out over the members, least loaded first, in turn.
serve_routing(_, S = #st{nrouting = 0}) -> S;
serve_routing({}, S) -> S;
serve_routing(Route, S = #st{routing = Q}) ->
    Members = tuple_to_list(Route),
    Ranked = lists:sort([{atomics:get(L, 1), I, M} || {I, M = {_, L}} <- lists:zip(lists:seq(1, length(Members)), Members)]),
    Order = [M || {_, _, M} <- Ranked],
    deal(queue:to_list(Q), Order, Order),
    S#st{routing = queue:new(), nrouting = 0}.

deal([], _, _) -> ok;
deal(Waiters, [], Order) -> deal(Waiters, Order, Order);
deal([#wait{from = From, mref = M, deadline = D} | Rest], [{Worker, Load} | Next], Order) ->
    erlang:demonitor(M, [flush]),
    case D =/= infinity andalso erlang:monotonic_time(millisecond) >= D of
        true -> deal(Rest, [{Worker, Load} | Next], Order);  % it gave up already
        false ->
            atomics:add(Load, 1, 1),
            gen_server:reply(From, {ok, Worker, Load}),
            deal(Rest, Next, Order)
    end.

%% ------------------------------------------------------------------ checkout

checkout(Pool, {Kind, Deadline}) ->
    Ref = make_ref(),
    try gen_server:call(Pool, {checkout, Ref, Deadline}, remaining(Deadline)) of
        {ok, Worker} -> {ok, Worker, Ref};
        {error, Reason} -> {error, Reason}
    catch
        exit:{timeout, {gen_server, call, _}} ->
            %% The pool may hand us a member just as we give up: give it back.
            gen_server:cast(Pool, {abandon, Ref}),
            {error, {timeout, Kind}};
        exit:{Reason, {gen_server, call, _}} -> {error, {pool_down, Reason}}
    end.

%% The wait for a member ends at the call's deadline or the checkout
%% timeout's, whichever comes first; each gives its own error.
checkout_deadline(Deadline, infinity) -> {timeout, Deadline};
checkout_deadline(Deadline, Ms) ->
    Mine = erlang:monotonic_time(millisecond) + Ms,
    case Deadline =:= infinity orelse Mine < Deadline of
        true -> {checkout_timeout, Mine};
        false -> {timeout, Deadline}
    end.

%% ------------------------------------------------------------------ start

%% @private Start every member together; succeed once all are ready.
-spec init_server(map()) -> {ok, #st{}} | {error, term()}.
init_server(Opts) ->
    process_flag(trap_exit, true),
    #{size := Size, max_queue := MaxQueue, spinners := Spinners, pin := Pin} = Opts,
    WorkerOpts = maps:without([size, max_queue, spinners, name, pin], Opts),
    Keeper = tether_routes:watch(),
    Polling = case maps:get(spin_us, WorkerOpts, 1) of
                  0 -> 0;  % spin_us: 0 for all: no member polls, whatever `spinners' says
                  _ -> min(Spinners, Size)
              end,
    S0 = #st{worker_opts = WorkerOpts, size = Size, max_queue = MaxQueue,
             name = maps:get(name, Opts, undefined), keeper = Keeper, polling = Polling,
             pin_offset = pin_offset(Pin, Polling, Size, tether_options:cpus())},
    Started = case start_members(Size, S0) of
                  {ok, S1} -> await_members(Size, S1);
                  {error, Reason, S1} -> stop_members(S1), {error, Reason}
              end,
    case Started of
        {ok, S2} -> {ok, publish(S2)};
        Error -> Error
    end.

%% @private Never called: tether_proc enters the loop with the state ready.
-spec init(term()) -> {stop, not_started_this_way}.
init(_) -> {stop, not_started_this_way}.

start_members(0, S) -> {ok, S};
start_members(N, S) ->
    case start_member(S) of
        {ok, S1} -> start_members(N - 1, S1);
        {error, Reason} -> {error, Reason, S}
    end.

%% A new member (a replacement too) polls while fewer than `polling' members do.
start_member(S = #st{worker_opts = Opts, members = Members}) ->
    Spins = spinning(S) < S#st.polling,
    {Index, Role} = case Spins of
                        true -> {free_pin_index(S), #{}};
                        false -> {undefined, #{spin_us => 0}}
                    end,
    Pinned = case pin(Index, S) of
                 none -> Role;
                 Pin -> Role#{pin => Pin}
             end,
    Load = atomics:new(1, []),
    case tether_worker:start_member(maps:merge(Opts, Pinned#{notify => self(), async_start => true, load => Load})) of
        {ok, Pid} ->
            Member = #member{spins = Spins, load = Load, pin_index = Index},
            {ok, S#st{members = Members#{Pid => Member}}};
        Error -> Error
    end.

%% Pinning (`pin', on by default): each polling member gets a CPU of its own
%% and the sleeping members the CPUs left, so that the kernel never wakes a
%% sleeping member on a polling one's CPU, where the two share it. Measured on
%% 2 cores with 8 callers, a pool of 2 took 13.1-14.3 us a call with the two
%% on different CPUs, and 15-20 us whenever they shared one, which happened
%% unpinned in about half the runs, and could start in the middle of one. A
%% pool whose members all poll (a pool of 1, say) is not pinned: it has no
%% sleeper to keep apart, and a pinned lone member only got in other pools'
%% way (another pool of 2 beside it ran at 14-29 us, against 14-15 unpinned).
%% A pinned sleeping member serves under SCHED_BATCH while its CPU has room
%% (`sched_batch', tether._sched): it then does not preempt the scheduler it
%% shares that CPU with on each wake-up. On 2 cores, a pool of 2 took 14.6 us
%% a call under it, against 16.0 us at the normal policy.
%% Python picks the CPUs among those it may use (tether.worker.pinned_cpus);
%% the node's pools take turns through a shared cursor, so that two pools'
%% polling members start on different CPUs.
%%
%% Schedulers bound to CPUs (`+sbt db', say): the polling members take the
%% last CPUs, counting down. The BEAM keeps its work on its lowest-numbered
%% schedulers while it can, so a polling member on scheduler 1's CPU shares
%% it with the pool's own traffic: measured on 2 cores with `+sbt db', 26.7-
%% 27.2 us a call in every 250 ms window, against 14.5-16.0 us with the
%% polling member on the other CPU. Unbound, the kernel moves the BEAM's
%% threads, and pools sat in either state (docs/performance.md, "What the
%% slower state is").
%% Counting down wraps at the CPUs Python indexes (all the node may run on),
%% not at `Cpus', which a CPU quota may have capped.
pin_offset(true, Spinners, Size, Cpus) when Spinners > 0, Spinners < Size, Size =< Cpus ->
    Turn = tether_routes:next_cursor(Spinners),
    case tether_options:schedulers_bound() of
        true ->
            Allowed = tether_options:allowed_cpus(),
            ((Allowed - Spinners - Turn) rem Allowed + Allowed) rem Allowed;
        false ->
            Turn
    end;
pin_offset(_, _, _, _) ->
    %% Not asked; or no sleeping member to keep apart (a pool of 1 is never
    %% pinned); or more members than CPUs, whose sleepers would crowd the few
    %% CPUs the polling ones leave.
    undefined.

pin(_, #st{pin_offset = undefined}) -> none;
pin(undefined, #st{pin_offset = Offset, polling = Polling}) -> {sleeper, Offset, 0, Polling};
pin(Index, #st{pin_offset = Offset, polling = Polling}) -> {spinner, Offset, Index, Polling}.

%% The lowest index no live polling member holds: a replacement takes the CPU
%% of the member it replaces.
free_pin_index(#st{members = Members}) ->
    Held = [I || #member{pin_index = I} <- maps:values(Members), I =/= undefined],
    hd([I || I <- lists:seq(0, length(Held)), not lists:member(I, Held)]).

spinning(#st{members = Members}) ->
    maps:fold(fun(_, #member{spins = true}, N) -> N + 1; (_, _, N) -> N end, 0, Members).

await_members(0, S) -> {ok, S};
await_members(N, S = #st{members = Members}) ->
    receive
        %% Every notice in order (a member says `starting' before `ready').
        {tether_worker, Pid, ready} when is_map_key(Pid, Members) ->
            await_members(N - 1, make_available(Pid, set_health(Pid, ready, S)));
        {tether_worker, Pid, {python, OsPid, Alerts}} when is_map_key(Pid, Members) ->
            await_members(N, set_python(Pid, OsPid, Alerts, S));
        {tether_worker, Pid, Health} when is_map_key(Pid, Members) ->
            await_members(N, set_health(Pid, Health, S));
        {'EXIT', Pid, Reason} when is_map_key(Pid, Members) ->
            S1 = S#st{members = maps:remove(Pid, Members)},
            stop_members(S1),
            {error, start_reason(Reason)}
    end.

start_reason({shutdown, {worker_start_failed, Reason}}) -> Reason;
start_reason(Reason) -> Reason.

stop_members(#st{members = Members}) ->
    Pids = maps:keys(Members),
    [exit(Pid, shutdown) || Pid <- Pids],
    [receive {'EXIT', Pid, _} -> ok after ?STOP_WAIT -> exit(Pid, kill) end || Pid <- Pids],
    ok.

%% ------------------------------------------------------------------ gen_server

%% Every message may change who is on the route: publish it after each.
% @private
-spec handle_call(term(), gen_server:from(), #st{}) -> {reply, term(), #st{}} | {noreply, #st{}}.
handle_call(Request, From, S) -> published(on_call(Request, From, S)).

% @private
-spec handle_cast(term(), #st{}) -> {noreply, #st{}}.
handle_cast(Msg, S) -> published(on_cast(Msg, S)).

% @private
-spec handle_info(term(), #st{}) -> {noreply, #st{}} | {stop, term(), #st{}}.
handle_info(Info, S) -> published(on_info(Info, S)).

published({reply, Reply, S}) -> {reply, Reply, publish(S)};
published({noreply, S}) -> {noreply, publish(S)}.

on_call({Wait, _Ref, _Deadline}, _From, S = #st{start_error = Why}) when Why =/= undefined,
                                                                      map_size(S#st.members) =:= 0,
                                                                      (Wait =:= checkout orelse Wait =:= route_wait) ->
    {reply, {error, {no_worker, Why}}, S};
on_call({checkout, Ref, Deadline}, From = {Caller, _}, S) ->
    case take_idle(S) of
        {ok, Worker, S1} -> {reply, {ok, Worker}, hand_out(Worker, Ref, erlang:monitor(process, Caller), S1)};
        none when S#st.nwaiting < S#st.max_queue ->
            W = #wait{ref = Ref, from = From, mref = erlang:monitor(process, Caller), deadline = Deadline},
            {noreply, drain(S#st{waiting = queue:in(W, S#st.waiting), nwaiting = S#st.nwaiting + 1})};
        none ->
            tether_telemetry:execute([tether, pool, overloaded], #{queue_length => S#st.nwaiting},
                                     overload_meta(S)),
            {reply, {error, overloaded}, S}
    end;
on_call({route_wait, Ref, Deadline}, From = {Caller, _}, S) ->
    case on_route(S) of
        {} when S#st.nrouting < S#st.max_queue ->
            W = #wait{ref = Ref, from = From, mref = erlang:monitor(process, Caller), deadline = Deadline},
            {noreply, S#st{routing = queue:in(W, S#st.routing), nrouting = S#st.nrouting + 1}};
        {} ->
            tether_telemetry:execute([tether, pool, overloaded], #{queue_length => S#st.nrouting},
                                     overload_meta(S)),
            {reply, {error, overloaded}, S};
        Route ->
            {{Worker, Load}, _, _} = least_loaded(Route, 1, none, 0, 0),
            atomics:add(Load, 1, 1),  % counted in for the caller, as pick/3 does
            {reply, {ok, Worker, Load}, S}
    end;
%% Each member counts once: starting or cancelling, else busy (held, or
%% running calls routed to it), else idle. Queued: the pool's two queues, and
%% the calls waiting at members (all of a member's calls while it runs none).
on_call(status, _From, S = #st{members = Members}) ->
    States = [{member_state(M), load(M)} || M <- maps:values(Members)],
    Count = fun(State) -> length([x || {St, _} <- States, St =:= State]) end,
    AtMembers = [case St of busy -> max(0, L - 1); _ -> L end || {St, L} <- States],
    {reply, #{size => S#st.size,
              workers => maps:keys(Members),
              idle => Count(idle),
              busy => Count(busy),
              starting => Count(starting),
              cancelling => Count(cancelling),
              down => S#st.size - maps:size(Members),
              spinning => spinning(S),
              queued => S#st.nwaiting + S#st.nrouting + lists:sum(AtMembers)}, S};
%% A worker's request sent to a pool (Tether.Worker.call/info/stats given a pool's
%% name): answer it with an error naming the fix instead of crashing every member.
on_call({call, _Ref, _M, _F, _Args, _Tables, _Deadline, _Load}, _From, S) ->
    {reply, {tether_reply, {error, not_a_worker()}, #{}}, S};
on_call(_Request, _From, S) ->
    {reply, {error, not_a_worker()}, S}.

not_a_worker() ->
    {not_a_worker, <<"this is a tether pool: use Tether.Pool.call/5 (tether_pool:call/5), or "
                     "Tether.Pool.transaction/3 to reach one member with Tether.Worker's functions">>}.

on_cast({checkin, Ref}, S) -> {noreply, checkin(Ref, S)};
on_cast({abandon, Ref}, S = #st{checkouts = C}) when is_map_key(Ref, C) ->
    {noreply, checkin(Ref, S)};
on_cast({abandon, Ref}, S) ->
    {noreply, drop_waiting(fun(#wait{ref = R}) -> R =:= Ref end, S)};
on_cast(_Msg, S) -> {noreply, S}.

on_info({tether_worker, Pid, {python, OsPid, Alerts}}, S = #st{members = Members}) when is_map_key(Pid, Members) ->
    {noreply, set_python(Pid, OsPid, Alerts, S)};
on_info({tether_worker, Pid, Health}, S = #st{members = Members}) when is_map_key(Pid, Members) ->
    S1 = set_health(Pid, Health, S),
    case Health of
        ready ->
            S2 = case S#st.failures of 0 -> S1; _ -> S1#st{failures = 0, start_error = undefined} end,
            {noreply, make_available(Pid, S2)};
        _ -> {noreply, S1#st{idle = lists:delete(Pid, S1#st.idle)}}
    end;
on_info({'DOWN', Mref, process, _, _}, S = #st{keeper = {_, Mref}}) ->
    {noreply, S#st{keeper = tether_routes:watch()}};  % then published/1 publishes again
on_info({'DOWN', Mref, process, _, _}, S = #st{holders = H}) when is_map_key(Mref, H) ->
    %% The holder died: the member's own monitor cancels what it was running.
    {noreply, checkin(maps:get(Mref, H), S)};
on_info({'DOWN', Mref, process, _, _}, S) ->
    {noreply, drop_waiting(fun(#wait{mref = M}) -> M =:= Mref end, S)};
on_info({'EXIT', Pid, Reason}, S = #st{members = Members}) when is_map_key(Pid, Members) ->
    {noreply, replace(Pid, Reason, S)};
on_info(start_member, S) ->
    {noreply, replace_one(S)};
on_info(drain, S) ->
    {noreply, serve_waiters(S#st{drain_timer = undefined})};
on_info(_Other, S) ->
    {noreply, S}.

% @private What a crash report and sys:get_status show of a pool: its shape,
% never the members' options (their environment may hold secrets), nor a
% call's arguments (tether_worker:status_message/1).
-spec format_status(map()) -> map().
format_status(Status) ->
    maps:map(fun(state, S = #st{}) ->
                     #{tether_pool => pool_ref(S), size => S#st.size, members => maps:size(S#st.members),
                       idle => length(S#st.idle), waiting => S#st.nwaiting, routing => S#st.nrouting,
                       checked_out => maps:size(S#st.checkouts), polling => S#st.polling};
                (message, Message) -> tether_worker:status_message(Message);
                (_, Value) -> Value
             end, Status).

% @private
-spec terminate(term(), #st{}) -> ok.
terminate(_Reason, S) ->
    tether_routes:delete(self()),
    stop_members(S),
    ok.

%% ------------------------------------------------------------------ members

member_state(#member{health = starting}) -> starting;
member_state(#member{health = cancelling}) -> cancelling;
member_state(#member{holder = undefined} = M) ->
    case load(M) of
        0 -> idle;
        _ -> busy
    end;
member_state(_) -> busy.

%% A member checked out is one with no calls routed to it (ready and not
%% held: on `idle'), taken with a compare-and-swap of its count from 0 to
%% HELD; a polling member answers sooner than one asleep in read().
take_idle(#st{idle = []}) -> none;
take_idle(S = #st{idle = Idle, members = Members}) ->
    Spins = fun(W) -> (maps:get(W, Members))#member.spins end,
    {Polling, Sleeping} = lists:partition(Spins, Idle),
    case lists:search(fun(W) -> hold(maps:get(W, Members)) end, Polling ++ Sleeping) of
        {value, Worker} -> {ok, Worker, S#st{idle = lists:delete(Worker, Idle)}};
        false -> none
    end.

hold(#member{load = Load}) ->
    atomics:compare_exchange(Load, 1, 0, ?HELD) =:= ok.

%% The calls routed to a member, 0 while it is checked out. At most 0 is
%% free: a count the member reset (tether_worker's settle) may meet a call
%% that had been on its way for longer than LOAD_CHECK.
load(#member{load = Load}) ->
    N = atomics:get(Load, 1),
    case held(N) of
        true -> max(0, N - ?HELD);
        false -> max(0, N)
    end.

%% @private Whether a member's count says it is checked out (for tether_worker,
%% which leaves such a count alone).
-spec held(integer()) -> boolean().
held(Count) -> Count < ?HELD div 2.

%% Mref monitors the caller the member goes to: a waiter keeps the monitor it
%% had while queued (one monitor and demonitor fewer per queued call).
hand_out(Worker, Ref, Mref, S = #st{members = Members, checkouts = C, holders = H}) ->
    Member = maps:get(Worker, Members),
    S#st{members = Members#{Worker := Member#member{holder = Ref, draining = false}},
         checkouts = C#{Ref => {Worker, Mref}}, holders = H#{Mref => Ref}}.

checkin(Ref, S = #st{checkouts = C, holders = H, members = Members}) ->
    case maps:take(Ref, C) of
        {{Worker, Mref}, C1} ->
            erlang:demonitor(Mref, [flush]),
            S1 = S#st{checkouts = C1, holders = maps:remove(Mref, H)},
            case maps:find(Worker, Members) of
                {ok, Member = #member{health = Health, load = Load}} ->
                    atomics:sub(Load, 1, ?HELD),  % the hold lifted: routed calls may count in again
                    S2 = S1#st{members = Members#{Worker := Member#member{holder = undefined}}},
                    case Health of
                        ready -> make_available(Worker, S2);
                        _ -> S2  % it comes back when it reports ready
                    end;
                error -> S1
            end;
        error -> S
    end.

%% A member that is ready and not held joins the idle list; then waiters are
%% served.
make_available(Worker, S = #st{members = Members}) ->
    case maps:find(Worker, Members) of
        {ok, #member{health = ready, holder = undefined}} ->
            S1 = case lists:member(Worker, S#st.idle) of
                     true -> S;
                     false -> S#st{idle = S#st.idle ++ [Worker]}
                 end,
            serve_waiters(S1);
        _ -> S
    end.

%% Hand each waiter, in turn, a member whose routed calls have run out. While
%% none has, one member leaves the route (draining) so that its calls run out
%% instead of growing, and the pool looks again (every ?DRAIN_POLL ms, then
%% less often).
%% The waiter comes first: take_idle/1 marks the member held, so it must
%% have someone to go to.
serve_waiters(S) ->
    case next_waiter(S) of
        none -> undrain(S);  % none waits, or every waiter had given up
        {W = #wait{ref = Ref, from = From, mref = M}, S1} ->
            case take_idle(S1) of
                {ok, Worker, S2} ->
                    gen_server:reply(From, {ok, Worker}),
                    serve_waiters(hand_out(Worker, Ref, M, S2#st{drain_every = ?DRAIN_POLL}));
                none -> drain(S1#st{waiting = queue:in_r(W, S1#st.waiting), nwaiting = S1#st.nwaiting + 1})
            end
    end.

drain(S = #st{members = Members, idle = Idle}) ->
    Draining = [W || W <- Idle, (maps:get(W, Members))#member.draining],
    S1 = case {Draining, lists:sort([{load(maps:get(W, Members)), W} || W <- Idle])} of
             {[], [{_, Least} | _]} ->
                 Member = maps:get(Least, Members),
                 Least ! {tether_pool, settle},  % a count left by a dead caller is reset after LOAD_CHECK
                 S#st{members = Members#{Least := Member#member{draining = true}}};
             _ -> S  % one drains already, or none is ready: a checkin or a ready serves the waiters
         end,
    case S1#st.drain_timer =:= undefined andalso Idle =/= [] of
        true ->
            Every = S1#st.drain_every,
            S1#st{drain_timer = erlang:send_after(Every, self(), drain),
                  drain_every = min(2 * Every, ?DRAIN_POLL_MAX)};
        false -> S1
    end.

undrain(S = #st{members = Members}) ->
    S#st{members = maps:map(fun(_, M) -> M#member{draining = false} end, Members), drain_every = ?DRAIN_POLL}.

next_waiter(S = #st{waiting = Q, nwaiting = N}) ->
    case queue:out(Q) of
        {empty, _} -> none;
        {{value, W = #wait{deadline = D, mref = M}}, Q1} ->
            S1 = S#st{waiting = Q1, nwaiting = N - 1},
            case D =/= infinity andalso erlang:monotonic_time(millisecond) >= D of
                true -> erlang:demonitor(M, [flush]), next_waiter(S1);  % it gave up already
                false -> {W, S1}
            end
    end.

drop_waiting(Pred, S = #st{waiting = Q, routing = R}) ->
    {Drop, Keep} = lists:partition(Pred, queue:to_list(Q)),
    {DropR, KeepR} = lists:partition(Pred, queue:to_list(R)),
    [erlang:demonitor(M, [flush]) || #wait{mref = M} <- Drop ++ DropR],
    S#st{waiting = queue:from_list(Keep), nwaiting = length(Keep),
         routing = queue:from_list(KeepR), nrouting = length(KeepR)}.

set_health(Pid, Health, S = #st{members = Members}) ->
    Member = maps:get(Pid, Members),
    S#st{members = Members#{Pid := Member#member{health = Health}}}.

set_python(Pid, OsPid, Alerts, S = #st{members = Members}) ->
    Member = maps:get(Pid, Members),
    S#st{members = Members#{Pid := Member#member{os_pid = OsPid, alerts = Alerts}}}.

%% A member died: forget it (its holder's call has failed already) and start
%% another, at once after a crash, after a growing delay when it could not start.
replace(Pid, Reason, S = #st{members = Members, checkouts = C, holders = H}) ->
    Held = [{Ref, Mref} || {Ref, {W, Mref}} <- maps:to_list(C), W =:= Pid],
    [erlang:demonitor(Mref, [flush]) || {_, Mref} <- Held],
    S1 = S#st{members = maps:remove(Pid, Members), idle = lists:delete(Pid, S#st.idle),
              checkouts = maps:without([Ref || {Ref, _} <- Held], C),
              holders = maps:without([Mref || {_, Mref} <- Held], H)},
    case Reason of
        {shutdown, {worker_start_failed, Why}} ->
            %% Logged here, once: the member leaves it to the pool, which also returns a first start's
            %% failure to the caller of start_link instead of logging it per member.
            logger:error("tether pool ~p: could not start a worker (retrying): ~0tP", [pool_ref(S), Why, 30],
                         log_meta(S)),
            start_failed(Why, S1);
        _ ->
            member_down(Pid, Reason, maps:get(Pid, Members), S),
            replace_one(S1)
    end.

%% A member killed outright (its terminate never ran) did not report its
%% Python's exit nor clear its alerts: the pool does, once. One that stopped
%% otherwise reported them (tether_worker's exited) and told the pool so.
member_down(Pid, Reason, #member{os_pid = OsPid, alerts = Alerts}, S) ->
    logger:warning("tether pool ~p: member ~p~ts went down (~0tP); starting another",
                   [pool_ref(S), Pid, python_text(OsPid), Reason, 20],
                   (log_meta(S))#{tether_worker => Pid, os_pid => OsPid}),
    _ = OsPid =/= undefined andalso tether_telemetry:python_exited(Pid, OsPid, {worker_down, Reason}, Alerts),
    ok.

python_text(undefined) -> "";
python_text(OsPid) -> io_lib:format(" (Python os pid ~b)", [OsPid]).

replace_one(S) ->
    case start_member(S) of
        {ok, S1} -> S1;
        {error, Reason} ->
            logger:error("tether pool ~p: could not start a worker: ~0tP", [pool_ref(S), Reason, 30],
                         log_meta(S)),
            start_failed(Reason, S)
    end.

%% No member left: the callers waiting for one hear why now, not at their timeouts
%% (a member that starts later serves the calls made then).
start_failed(Why, S) ->
    S1 = retry_later(S#st{start_error = Why}),
    case maps:size(S1#st.members) of
        0 ->
            Error = {error, {no_worker, Why}},
            [begin erlang:demonitor(M, [flush]), gen_server:reply(From, Error) end
             || #wait{from = From, mref = M} <- queue:to_list(S1#st.waiting) ++ queue:to_list(S1#st.routing)],
            S1#st{waiting = queue:new(), nwaiting = 0, routing = queue:new(), nrouting = 0};
        _ -> S1
    end.

retry_later(S = #st{failures = F}) ->
    erlang:send_after(min(?BACKOFF_MAX, ?BACKOFF_MIN bsl min(F, 10)), self(), start_member),
    S#st{failures = F + 1}.

%% As a member's lines name its pool (tether_worker's pool_name/1): a local
%% name, else the pid.
log_meta(#st{name = {local, Name}}) -> #{domain => [tether], tether_pool => Name};
log_meta(_) -> #{domain => [tether], tether_pool => self()}.

pool_ref(#st{name = undefined}) -> self();
pool_ref(#st{name = {local, Name}}) -> Name;
pool_ref(#st{name = Name}) -> Name.

deadline(infinity) -> infinity;
deadline(Ms) -> erlang:monotonic_time(millisecond) + Ms.

remaining(infinity) -> infinity;
remaining(Deadline) -> max(0, Deadline - erlang:monotonic_time(millisecond)).

