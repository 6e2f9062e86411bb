%% @doc A Python worker driven from the BEAM: one `python -m tether.worker'
%% process behind a gen_server, speaking the protocol of docs/format.md §8.
%%
%% Starting fails fast: `start_link/1' returns only once Python has imported
%% every module and answered the handshake, or `{error, Reason}':
%% `{python_not_found, Python}', `{python_not_executable, Python, What}'
%% (`directory', `not_executable'), `{import_error, Module, Type, Message,
%% Traceback}' (the traceback followed by what the modules logged and printed
%% before the failure), `{incompatible, #{python => Vsn, beam => Vsn}}',
%% `{tether_not_installed, Python, Stderr}' (that interpreter cannot import
%% tether: install the tether wheel into its environment, or give the
%% environment's interpreter), `{exited_before_ready, Status, Stderr}',
%% `{start_timeout, Ms, Stderr}' or `{bad_option, Key, Message}'.
%%
%% Calls run one at a time (a worker is one Python process); callers queue.
%% A call answers `{ok, Value}' or `{error, Reason}' with `Reason' one of
%% `{python, Type, Message, Traceback}', `{undefined_function, Module,
%% Function}', `timeout', `{worker_exit, Status}', `{worker_down, Why}',
%% `{bad_etf, Why}' (the reply names atoms this node does not know),
%% `{bad_request, Message}', `{message_too_large, Size, Max}' (arguments
%% kept out of shared memory by `shm_threshold' but over `max_message'),
%% `{embedded_shm, Path, Why}' (a result in shared
%% memory that cannot be read), `{embedded_too_deep, Max}', `funs_refused' (a
%% fun among the arguments), `{worker_start_failed, Why}' (Python could not
%% be restarted for it), `{bad_option, Key, Message}' or `{bad_argument,
%% Which, Message}' (the call's own options or arguments), or what
%% tether:decode/1 says of an embedded frame that does not decode.
%%
%% Python's `logging' records reach `logger' at their level, so OTP's primary
%% level (`notice' by default) drops `info' and `debug' ones: set it, e.g.
%% `logger:set_primary_config(level, info)', to see them.
%%
%% A call past its deadline (time spent queued counts) is answered
%% `{error, timeout}' at once; Python gets SIGUSR1 and abandons it, or is
%% killed and restarted after `cancel_grace' ms. Queued calls whose caller has
%% died or given up are dropped unrun. If Python dies, the call in flight gets
%% `{error, {worker_exit, Status}}' and a fresh Python starts at once.
-module(tether_worker).
-behaviour(gen_server).

-include_lib("kernel/include/file.hrl").
-include("../include/tether.hrl").

-export([start_link/1, start/1, call/4, call/5, measure/5, stats/1, stats/2, stop/1, info/1, child_spec/1]).
-export([start_member/1]).
-export([request/7, request/8]).
-export([init_server/1, init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, format_status/1]).
-export([status_message/1]).

%% `load': a pool member's count of the calls routed to it (tether_pool), or
%% undefined. The caller adds one as it picks this member; this process takes
%% it off when the call leaves, however it leaves. A caller killed between the
%% two leaves a count that no call will take off: settle/1 resets it.
-record(req, {ref, from, mref, module, function, args, tables, deadline, enqueued, load}).
-record(busy, {req, id, sent, bytes_in, route, stages = #{}}).
-record(st, {opts, exe, dir, port, os_pid, info = #{}, phase = starting, started, start_timer,
             stderr, stderr_seen = 0, queue = queue:new(), busy, cancel, args_file,
             args_size = 0,  % the arguments file's size: its largest call's arguments
             shm_used, shm_timer,  % the last call through shared memory, and the timer that lets go of it
             tells_release = false,  % whether Python reads the release_shm notice
             next_id = 1, notify, arrived, form = frame, reads_bytes = false,
             load :: undefined | atomics:atomics_ref(),  % this member's count in its pool (tether_pool)
             keeper :: reference() | undefined,  % a monitor of the keeper that removes dir if this dies
             quick_exits = 0 :: non_neg_integer(),  % Pythons in a row that exited idle, soon after starting
             killed :: undefined | binary(),  % why this worker killed its Python, until it exits
             %% The alerts this Python has firing, cleared on the BEAM side when it exits.
             alerts = #{} :: #{term() => {term(), map(), term()}},
             pool :: undefined | pid() | atom()}).  % a member's pool, for log metadata

%% The longest a reply's region read may take when the call has no deadline.
-define(READ_MAX, 30000).
%% How long opening a region may take, the call's deadline passed or not: a
%% region file opens in microseconds, and a lease holds open(2) for 45 s.
-define(OPEN_GRACE, 1000).

%% How long a member that has nothing to do waits before it takes a count
%% still on its pool's load (its callers died before their calls arrived) as gone.
-define(LOAD_CHECK, 1000).

%% The ready's list of the argument markers the worker reads (docs/format.md §8): a
%% binary key, so that a BEAM that does not know it still decodes the ready.
-define(READY_MARKERS, <<"markers">>).
%% The ready's list of the one-way notices the worker reads, as "markers" is.
-define(READY_NOTICES, <<"notices">>).
%% The ready's flag: the worker sends what it logged and wrote to stderr before ready, after it.
-define(READY_EARLY_OUTPUT, <<"early_output">>).

%% How soon a worker whose shared memory was due to go while a call ran
%% looks again (shm_keep may be 0: not a timer a millisecond through a long call).
-define(TRIM_RECHECK, 1000).

%% A Python that exits with no call running before it has lived STABLE_MS is
%% started again at once the first time, then after RESTART_MIN ms, doubling
%% up to RESTART_MAX: a module that ends its process from a thread would
%% otherwise start Python 5 times a second for ever. An exit during a call
%% restarts at once (its caller has the error; the next call may be fine).
-define(STABLE_MS, 5000).
-define(RESTART_MIN, 100).
-define(RESTART_MAX, 10000).

%% A call that moved at least this many bytes has its binaries let go of at once.
-define(LARGE_CALL, 1 bsl 20).

-type server() :: pid() | atom() | {global, term()} | {via, module(), term()}.
-type call_opts() :: timeout() | #{timeout => timeout(), tables => arrow | rows | columns}
                   | [{timeout, timeout()} | {tables, arrow | rows | columns}].
-export_type([server/0, call_opts/0]).

%% ------------------------------------------------------------------ API

%% @doc Start a worker linked to the caller. Options (a map or proplist):
%% `modules' (required: the Python modules whose public functions may be
%% called), `python' (executable, default "python3"), `env' ([{Name, Value}]),
%% `cd', `shm_threshold' (bytes, default 1 MiB), `shm_dir' (default
%% /dev/shm), `max_message' (the largest call through the pipe, default
%% 256 MiB), `binaries' (bytes | str), `start_timeout' (ms, default 60000),
%% `cancel_grace' (ms, default 1000), `log_level' (Python's root logger:
%% debug .. critical), `spin_us' (microseconds Python polls for the next call
%% before it sleeps, 0..10000; default the worker's, 200), `shm_keep' (ms the
%% shared memory kept between calls stays after the last call that used it
%% ended, default 30000, or infinity), `name'.
%%
%% ```
%% {ok, W} = tether_worker:start_link(#{python => "python3", modules => [<<"my_handlers">>]}).
%% '''
-spec start_link(map() | list()) -> {ok, pid()} | {error, term()}.
start_link(Opts) -> start(link, Opts).

%% @doc As {@link start_link/1}, not linked. A worker that cannot start is
%% `{error, Reason}', never an exit signal.
%%
%% ```
%% {ok, W} = tether_worker:start(#{modules => [<<"math">>]}),
%% {ok, 4.0} = tether_worker:call(W, <<"math">>, <<"sqrt">>, [16.0]),
%% ok = tether_worker:stop(W),
%% {error, {python_not_found, <<"/no/such/python">>}} =
%%     tether_worker:start(#{python => "/no/such/python", modules => [<<"math">>]}).
%% '''
-spec start(map() | list()) -> {ok, pid()} | {error, term()}.
start(Opts) -> start(nolink, Opts).

start(Link, Opts) -> start(Link, Opts, fun tether_options:worker/1).

%% @private A pool's member: a worker's options plus those its pool sets for
%% it (tether_options:member/1), which a worker started on its own refuses.
-spec start_member(map()) -> {ok, pid()} | {error, term()}.
start_member(Opts) -> start(link, Opts, fun tether_options:member/1).

start(Link, Opts, Check) ->
    case Check(Opts) of
        {ok, Checked = #{python := Python}} ->
            case tether_python:find(Python) of
                {ok, Exe} -> tether_proc:start(Link, ?MODULE, maps:get(name, Checked, undefined),
                                               Checked#{exe => Exe});
                Error -> Error
            end;
        Error -> Error
    end.

%% @doc A child specification for a supervisor. Its id is the `name' option
%% when there is one (so two named workers can share a supervisor), else
%% `tether_worker'.
%%
%% ```
%% Spec = tether_worker:child_spec(#{modules => [<<"my_handlers">>], name => w}),
%% #{id := w, start := {tether_worker, start_link, [_]}} = Spec.
%% '''
-spec child_spec(map() | list()) -> supervisor:child_spec().
child_spec(Opts) ->
    #{id => tether_options:child_id(Opts, ?MODULE), start => {?MODULE, start_link, [Opts]}, type => worker}.

%% @doc `Module.Function(*Args)' in Python, with the default 5 s timeout.
%%
%% ```
%% {ok, 3} = tether_worker:call(W, <<"my_handlers">>, <<"add">>, [1, 2]).
%% '''
-spec call(server(), iodata() | atom(), iodata() | atom(), list()) -> {ok, term()} | {error, term()}.
call(W, Mod, Fun, Args) -> call(W, Mod, Fun, Args, #{}).

%% @doc `Module.Function(*Args)' in Python. `Opts' is a timeout in ms, or
%% `#{timeout => T, tables => arrow | rows | columns}': how tables in the
%% result come back (Arrow IPC bytes, a list of maps, a map of lists).
%%
%% ```
%% {ok, Rows} = tether_worker:call(W, <<"my_handlers">>, <<"table">>, [], #{tables => rows}).
%% {error, timeout} = tether_worker:call(W, <<"my_handlers">>, <<"sleep">>, [10], 100).
%% '''
-spec call(server(), iodata() | atom(), iodata() | atom(), list(), call_opts()) ->
          {ok, term()} | {error, term()}.
call(W, Mod, Fun, Args, Opts) ->
    case {tether_options:target(Mod, Fun, Args), tether_options:call(worker, Opts)} of
        {{ok, M, F}, {ok, #{timeout := Timeout, tables := Tables}}} ->
            tether_telemetry:span(#{module => M, function => F, worker => W},
                                  fun() -> request(W, M, F, Args, Tables, deadline(Timeout), none) end);
        {{ok, _, _}, Error} -> Error;
        {Error, _} -> Error
    end.

%% @doc As {@link call/5}, and what the worker measured of the call:
%% `queue_time' (in native time units, as in telemetry), `bytes_in',
%% `bytes_out', `route' (`inline' or `shm') and `stages', the time in
%% microseconds of each stage in place: `encode' (the arguments, on the
%% BEAM), `write' (into the arguments file; 0 through the pipe), `python'
%% (from the request leaving the BEAM to its reply arriving: Python's
%% reading, the handler and its writing), `read' (the reply's frames out of
%% shared memory) and `decode'. An empty map when Python never answered.
%%
%% ```
%% {{ok, 3}, #{stages := #{python := _}}} = tether_worker:measure(W, <<"m">>, <<"add">>, [1, 2], 5000).
%% '''
-spec measure(server(), iodata() | atom(), iodata() | atom(), list(), call_opts()) ->
          {{ok, term()} | {error, term()}, map()}.
measure(W, Mod, Fun, Args, Opts) ->
    case {tether_options:target(Mod, Fun, Args), tether_options:call(worker, Opts)} of
        {{ok, M, F}, {ok, #{timeout := Timeout, tables := Tables}}} ->
            {Result, Stats} = tether_telemetry:measured_span(
                                 #{module => M, function => F, worker => W},
                                 fun() -> request(W, M, F, Args, Tables, deadline(Timeout), none) end),
            {Result, in_microseconds(Stats)};
        {{ok, _, _}, Error} -> {Error, #{}};
        {Error, _} -> {Error, #{}}
    end.

%% @doc The Python worker's metrics: `tether.metrics.snapshot()' (operations
%% by kind, format and route, alerts, memory) with a `worker' entry: calls
%% answered and the stages of the last call, in seconds (docs/format.md §8,
%% `stats'). `{error, {python, <<"MetricsUnavailable">>, _, _}}' when the
%% worker's tether has no metrics module.
%%
%% ```
%% {ok, #{<<"worker">> := #{<<"calls">> := _}}} = tether_worker:stats(W).
%% '''
-spec stats(server()) -> {ok, map()} | {error, term()}.
stats(W) -> stats(W, 5000).

%% @doc As {@link stats/1} with a timeout in ms.
-spec stats(server(), timeout()) -> {ok, map()} | {error, term()}.
stats(W, Timeout) ->
    element(1, request(W, stats, stats, [], arrow, deadline(Timeout), none)).

%% @private One call, without its telemetry span (tether_pool wraps its own):
%% the result and what the worker measured. `Deadline' is a monotonic time in
%% ms, or infinity.
%%
%% The caller keeps the deadline: its own wait ends there, and it tells the
%% worker to drop the call. (A timer per call in the worker cost about 8 us
%% of every small call, for the rare call that times out.) `Checkin' is
%% `{Pool, CheckoutRef}' for a pool member: after a timeout the worker checks
%% itself in, once it has told the pool it is cancelling (one sender, so the
%% pool hears both in that order).
-spec request(server(), binary() | stats, binary() | stats, list(), arrow | rows | columns, integer() | infinity,
              none | {tether_pool:pool(), reference()}) ->
          {{ok, term()} | {error, term()}, map()}.
request(W, M, F, Args, Tables, Deadline, Checkin) ->
    request(W, M, F, Args, Tables, Deadline, Checkin, undefined).

%% @private As request/7, for a call a pool routed to this member directly:
%% `Load' is the member's atomics counter, which the caller added one to.
-spec request(server(), binary() | stats, binary() | stats, list(), arrow | rows | columns, integer() | infinity,
              none | {tether_pool:pool(), reference()}, atomics:atomics_ref() | undefined) ->
          {{ok, term()} | {error, term()}, map()}.
request(W, M, F, Args, Tables, Deadline, Checkin, Load) ->
    Ref = make_ref(),
    try gen_server:call(W, {call, Ref, M, F, Args, Tables, Deadline, Load}, remaining(Deadline)) of
        {tether_reply, Result, Stats} -> {Result, Stats}
    catch
        exit:{timeout, {gen_server, call, _}} ->
            gen_server:cast(W, {cancel, Ref, Checkin}),
            {{error, timeout}, #{}};
        exit:{Reason, {gen_server, call, _}} -> {{error, {worker_down, Reason}}, #{}}
    end.

%% @doc Stop the worker and its Python process.
%%
%% ```
%% {ok, W} = tether_worker:start(#{modules => [<<"math">>]}),
%% ok = tether_worker:stop(W),
%% false = is_process_alive(W).
%% '''
-spec stop(server()) -> ok.
stop(W) -> gen_server:stop(W).

%% @doc What the worker's Python reported at its handshake (`tether',
%% `python', `modules', `speedups', ...), with its current `os_pid', `phase'
%% (`starting', `ready' or `cancelling'), `queued' calls, `running': the
%% call Python is running now (`module', `function', `caller' and `seconds'
%% since it was sent), or `nil' (also while a cancelled call stops, in phase
%% `cancelling'), `markers', `notices' and `early_output' (sent by Python under
%% binary keys; any key newer than this node stays a binary), and `args_file_bytes': the size of its
%% shared-memory arguments file (removed `shm_keep' ms after the last call
%% that used shared memory ended). Answered by the worker process, without
%% asking Python: during a call too, after whatever step of a call it is in.
%%
%% ```
%% {ok, W} = tether_worker:start(#{modules => [<<"os">>]}),
%% #{phase := ready, modules := [<<"os">>], os_pid := OsPid, queued := 0} = tether_worker:info(W),
%% {ok, OsPid} = tether_worker:call(W, <<"os">>, <<"getpid">>, []),
%% ok = tether_worker:stop(W).
%% '''
-spec info(server()) -> map().
info(W) -> gen_server:call(W, info).

%% ------------------------------------------------------------------ start

%% @private Called by tether_proc in the new process: start Python and, unless
%% `async_start' (pool members), wait for its handshake.
-spec init_server(map()) -> {ok, #st{}} | {error, term()}.
init_server(Opts = #{exe := Exe}) ->
    process_flag(trap_exit, true),
    Parent = maps:get(shm_dir, Opts, tether_private:default_parent()),
    _ = tether_private:sweep(Parent),
    case tether_private:make_dir(Parent) of
        {ok, Dir} ->
            case tether_routes:watch_dir(Dir) of  % removed even if this process is killed outright
                {ok, Keeper} ->
                    Notify = maps:get(notify, Opts, undefined),
                    S0 = #st{opts = Opts, exe = Exe, dir = Dir, notify = Notify, pool = pool_name(Notify),
                             load = maps:get(load, Opts, undefined), keeper = Keeper},
                    start_python(S0);
                {error, Reason} ->
                    _ = tether_private:remove_dir(Dir),
                    {error, Reason}
            end;
        Error -> Error
    end.

start_python(S0 = #st{opts = Opts}) ->
    case launch(S0) of
        {ok, S1} when map_get(async_start, Opts) -> {ok, S1};
        {ok, S1} ->
            case await_ready(S1) of
                {ok, S2} -> {ok, S2};
                {error, Reason, S2} -> cleanup(S2), {error, Reason}
            end;
        {error, Reason, S1} -> cleanup(S1), {error, Reason}
    end.

%% @private Never called: tether_proc enters the loop with the state ready.
-spec init(term()) -> {stop, not_started_this_way}.
init(_) -> {stop, not_started_this_way}.

%% The pool as an operator named it (registered before its members start),
%% else its pid.
pool_name(undefined) -> undefined;
pool_name(Pool) ->
    case erlang:process_info(Pool, registered_name) of
        {registered_name, Name} -> Name;
        _ -> Pool
    end.

%% Start Python and say hello. The answer is awaited by await_ready/1 (the
%% first start) or arrives in handle_info (restarts, pool members).
launch(S = #st{opts = Opts, exe = Exe, dir = Dir}) ->
    case tether_private:create_file(Dir, "stderr-") of
        {ok, Stderr, Fd} ->
            ok = file:close(Fd),
            Port = tether_python:open(Exe, Opts, Stderr),
            catch port_command(Port, tether_protocol:hello()),  % a dead port reports its exit status
            Timer = case maps:get(start_timeout, Opts) of
                        infinity -> undefined;
                        T -> erlang:start_timer(T, self(), start_timeout)
                    end,
            notify(starting, S),
            OsPid = tether_python:os_pid(Port),
            %% Watched from the start: a worker killed while Python imports leaves none behind.
            _ = S#st.keeper =/= undefined andalso is_integer(OsPid) andalso tether_routes:watch_python(OsPid, running),
            {ok, S#st{port = Port, os_pid = OsPid, phase = starting,
                      started = erlang:monotonic_time(), start_timer = Timer,
                      stderr = Stderr, stderr_seen = 0}};
        {error, Reason} -> {error, Reason, S}
    end.

await_ready(S = #st{port = Port, start_timer = Timer}) ->
    receive
        {Port, {data, Data}} ->
            case on_start_message(tether_protocol:decode(Data), S) of
                {continue, S1} -> await_ready(S1);
                Done -> Done
            end;
        {Port, {exit_status, Status}} ->
            {error, exited_before_ready(Status, S), S#st{port = undefined}};
        {timeout, Timer, start_timeout} ->
            {error, start_timeout(S), S}
    end.

on_start_message({ok, {ready, Info}}, S) ->
    case tether_protocol:check_ready(Info) of
        {ok, _} -> {ok, ready(Info, S)};
        {error, Reason} -> {error, Reason, S}
    end;
on_start_message({ok, {refused, {import_error, M, Type, Message, Tb}}}, S) when is_binary(Tb) ->
    {error, {import_error, M, Type, Message, with_output(Tb, S)}, S};
on_start_message({ok, {refused, Reason}}, S) -> {error, Reason, S};
on_start_message({ok, {log, Level, Logger, Message, Meta}}, S) ->
    log(Level, Logger, Message, Meta, S),
    {continue, S};
on_start_message({ok, Other}, S) -> {error, {bad_handshake, Other}, S};
on_start_message({error, Reason}, S) -> {error, {bad_handshake, Reason}, S}.

ready(Info, S = #st{started = Started, start_timer = Timer, port = Port}) ->
    cancel_timer(Timer),
    OsPid = case maps:get(pid, Info, undefined) of
                P when is_integer(P), P > 1 -> P;  % Python's own pid, behind any wrapper
                _ -> tether_python:os_pid(Port)
            end,
    tether_telemetry:execute([tether, worker, start],
                             #{duration => erlang:monotonic_time() - Started,
                               system_time => erlang:system_time()},
                             #{worker => self(), os_pid => OsPid,
                               python => maps:get(python, Info, undefined),
                               tether => maps:get(tether, Info, undefined),
                               modules => maps:get(modules, Info, [])}),
    S1 = S#st{phase = ready, info = Info, os_pid = OsPid, start_timer = undefined, form = tether_protocol:form(Info),
              reads_bytes = listed(atom_to_binary(?TAG_BYTES), maps:get(?READY_MARKERS, Info, [])),
              tells_release = listed(<<"release_shm">>, maps:get(?READY_NOTICES, Info, [])),
              stderr_seen = forwarded_stderr(Info, S)},
    _ = S#st.keeper =/= undefined andalso tether_routes:watch_python(OsPid, running),
    tell_pool(S1),
    notify(ready, S1),
    S1.

%% A worker that sends what it wrote to stderr before ready (its ready says
%% so) has sent it by now: a later exit quotes only what came after.
forwarded_stderr(#{?READY_EARLY_OUTPUT := true}, #st{stderr = Path}) when Path =/= undefined ->
    filelib:file_size(Path);
forwarded_stderr(_, S) -> S#st.stderr_seen.

%% Python's own words when `-m tether.worker' finds no tether package, or
%% tether's own import finds a dependency missing: the interpreter is not the
%% one tether was installed into, or tether was put on its path by hand.
exited_before_ready(Status, S = #st{exe = Exe}) ->
    Stderr = stderr_text(S),
    NoTether = binary:match(Stderr, [<<"No module named 'tether'">>, <<"No module named tether">>]) =/= nomatch,
    NoDependency = binary:match(Stderr, <<"ModuleNotFoundError">>) =/= nomatch
        andalso binary:match(Stderr, <<"/tether/__init__.py\"">>) =/= nomatch,
    case NoTether orelse NoDependency of
        false -> {exited_before_ready, Status, Stderr};
        true -> {tether_not_installed, unicode:characters_to_binary(Exe), Stderr}
    end.

start_timeout(S = #st{opts = #{start_timeout := T}, os_pid = OsPid}) ->
    tether_python:signal(OsPid, kill),
    {start_timeout, T, stderr_text(S)}.

stderr_text(#st{stderr = Path}) -> element(1, tether_python:stderr(Path, 0)).

%% What the modules logged and printed before an import failed (the worker
%% writes its records to stderr until ready), after the traceback: the cause
%% is often there ("GPU not found").
with_output(Tb, S) ->
    case stderr_text(S) of
        <<>> -> Tb;
        Text -> <<Tb/binary, "\nLogged and printed before the failure (stderr):\n", Text/binary>>
    end.

%% ------------------------------------------------------------------ gen_server

% @private
-spec handle_call(term(), gen_server:from(), #st{}) -> {reply, term(), #st{}} | {noreply, #st{}}.
handle_call({call, _Ref, _M, _F, _Args, _Tables, _Deadline, Load}, From, S = #st{phase = starting})
  when Load =/= undefined ->
    %% Routed here by a pool just as Python restarts (the pool has not heard yet): another
    %% member may be ready now, and the pool names one once one is.
    atomics:sub(Load, 1, 1),
    gen_server:reply(From, {tether_reply, {error, tether_reroute}, #{}}),
    {noreply, S};
handle_call(Call = {call, _Ref, _M, _F, _Args, _Tables, _Deadline, Load}, From,
            S = #st{phase = cancelling, notify = Pool}) when Load =/= undefined, is_pid(Pool) ->
    %% Its call timed out and Python has not let go yet: a call routed here
    %% before the pool heard would wait for that (up to cancel_grace, or a
    %% restart) while a peer has nothing to do.
    case tether_pool:idle_peer(Pool, self()) of
        true ->
            atomics:sub(Load, 1, 1),
            gen_server:reply(From, {tether_reply, {error, tether_reroute}, #{}}),
            {noreply, S};
        false -> {noreply, enqueue(Call, From, S)}
    end;
handle_call(Call = {call, _Ref, _M, _F, _Args, _Tables, _Deadline, _Load}, From, S) ->
    {noreply, enqueue(Call, From, S)};
handle_call(info, _From, S = #st{info = Info, os_pid = OsPid, phase = Phase, queue = Q, busy = B}) ->
    {reply, (atom_keys(Info))#{os_pid => OsPid, phase => Phase, queued => queue:len(Q), running => running(B),
                               args_file_bytes => S#st.args_size}, S};
%% A pool's request sent to a worker (Tether.Pool.call/status/transaction given a
%% worker): answer it with an error naming the fix instead of killing Python.
handle_call(_Request, _From, S) ->
    {reply, {error, {not_a_pool, <<"this is a tether worker: use Tether.Worker.call/5 "
                                   "(tether_worker:call/5)">>}}, S}.

enqueue({call, Ref, M, F, Args, Tables, Deadline, Load}, From = {Pid, _}, S = #st{queue = Q}) ->
    R = #req{ref = Ref, from = From, mref = erlang:monitor(process, Pid), module = M, function = F,
             args = Args, tables = Tables, deadline = Deadline, enqueued = erlang:monotonic_time(), load = Load},
    dispatch(S#st{queue = queue:in(R, Q)}).

%% The ready's binary keys this companion knows, as the atoms info/1 shows: Python sends
%% them as binaries only so that an older node decodes its ready; keys newer than this
%% companion stay binaries.
atom_keys(Info) ->
    lists:foldl(fun({Bin, Atom}, Acc) ->
                        case maps:take(Bin, Acc) of
                            {V, Rest} -> Rest#{Atom => V};
                            error -> Acc
                        end
                end, Info, [{?READY_MARKERS, markers}, {?READY_NOTICES, notices},
                            {?READY_EARLY_OUTPUT, early_output}]).

%% The call Python is running now, as info/1 shows it: answered here, since
%% the BEAM is free while Python works (a stats request would queue behind it).
running(#busy{req = #req{module = M, function = F, from = {Caller, _}}, sent = Sent}) ->
    Us = erlang:convert_time_unit(erlang:monotonic_time() - Sent, native, microsecond),
    #{module => M, function => F, caller => Caller, seconds => Us / 1.0e6};
running(_) -> nil.

%% @private
%% A caller past its deadline: drop its call, running or queued.
-spec handle_cast(term(), #st{}) -> {noreply, #st{}} | {noreply, #st{}, timeout()}.
handle_cast({cancel, Ref, Checkin}, S = #st{busy = #busy{req = R = #req{ref = Ref}, id = Id}}) ->
    release(R),
    S1 = cancel(Id, S#st{busy = undefined}),
    check_in(Checkin),
    {noreply, S1};
handle_cast({cancel, Ref, Checkin}, S = #st{queue = Q}) ->
    {Gone, Kept} = lists:partition(fun(#req{ref = R}) -> R =:= Ref end, queue:to_list(Q)),
    [release(R) || R <- Gone],
    check_in(Checkin),
    settle({noreply, S#st{queue = queue:from_list(Kept)}});
handle_cast(_Msg, S) -> {noreply, S}.

% @private
-spec handle_info(term(), #st{}) -> {noreply, #st{}} | {noreply, #st{}, timeout()} | {stop, term(), #st{}}.
handle_info({Port, {data, Data}}, S = #st{port = Port}) ->
    %% Stamped before decoding: the reply's decode is the BEAM's stage, not Python's.
    Arrived = erlang:monotonic_time(),
    settle(on_message(tether_protocol:decode(Data), byte_size(Data), S#st{arrived = Arrived}));
handle_info({Port, {exit_status, Status}}, S = #st{port = Port}) ->
    on_exit(Status, S#st{port = undefined});
handle_info({timeout, Timer, {grace, Id}}, S = #st{cancel = {Id, Timer}, os_pid = OsPid}) ->
    logger:warning("tether worker ~p: Python (os pid ~p) ignored the cancel for ~p ms; killing it",
                   [self(), OsPid, maps:get(cancel_grace, S#st.opts)], log_meta(S)),
    tether_python:signal(OsPid, kill),
    restart(close_port((exited(killed, S))#st{cancel = undefined}));
handle_info({timeout, Timer, start_timeout}, S = #st{phase = starting, start_timer = Timer}) ->
    start_failed(start_timeout(S), S);
handle_info({timeout, Timer, release_shm}, S = #st{shm_timer = Timer}) ->
    settle({noreply, release_shm(S)});
handle_info(restart_python, S = #st{port = undefined}) ->
    restart(S);
handle_info({'DOWN', Keeper, process, _, _}, S = #st{keeper = Keeper}) ->
    %% The keeper died, and the watch of this worker's directory with it: watch again.
    case tether_routes:watch_dir(S#st.dir) of
        {ok, Keeper1} ->
            _ = is_integer(S#st.os_pid) andalso tether_routes:watch_python(S#st.os_pid, running),
            {noreply, S#st{keeper = Keeper1}};
        {error, _} -> {noreply, S#st{keeper = undefined}}  % as before the keeper: terminate still removes it
    end;
handle_info({'DOWN', Mref, process, _, _}, S = #st{busy = #busy{req = R = #req{mref = Mref}, id = Id}}) ->
    %% Nobody waits for this call any more: free Python for the next one.
    release(R),
    {noreply, cancel(Id, S#st{busy = undefined})};
handle_info({'DOWN', Mref, process, _, _}, S = #st{queue = Q}) ->
    {Gone, Kept} = lists:partition(fun(#req{mref = M}) -> M =:= Mref end, queue:to_list(Q)),
    [release(R) || R <- Gone],
    settle({noreply, S#st{queue = queue:from_list(Kept)}});
handle_info({tether_pool, give_back}, S) ->
    {noreply, give_back(S)};
handle_info({tether_pool, settle}, S) ->
    %% The pool waits for this member's count to reach 0 (a checkout): look at it now.
    settle({noreply, S});
handle_info(timeout, S = #st{load = Load}) when Load =/= undefined ->
    %% Idle for LOAD_CHECK with calls still counted to this member: their callers died
    %% before the calls arrived. Reset the count, unless a caller counted one in just now.
    N = atomics:get(Load, 1),
    case idle(S) andalso stray(N) of
        true ->
            atomics:compare_exchange(Load, 1, N, 0) =:= ok andalso
                logger:info("tether worker ~p: ~p call(s) counted to this pool member never arrived "
                            "(their callers died on the way); count reset", [self(), N], log_meta(S)),
            ask_for_work(S),
            {noreply, S};
        _ -> {noreply, S}
    end;
handle_info(_Other, S) ->
    %% Stray timers, the exits of ports that sent a signal, messages of a closed port.
    {noreply, S}.

% @private
-spec terminate(term(), #st{}) -> ok.
terminate(Reason, S = #st{busy = Busy, cancel = Cancel, os_pid = OsPid, phase = Phase}) ->
    %% A Python still running a call would finish it before it saw its input close.
    case Busy =/= undefined orelse Cancel =/= undefined orelse Phase =:= starting of
        true -> tether_python:signal(OsPid, kill);
        %% An idle one exits once its input closes: the keeper leaves its atexit work time.
        false -> _ = S#st.keeper =/= undefined andalso is_integer(OsPid)
                     andalso tether_routes:watch_python(OsPid, stopping)
    end,
    %% A Python that never got ready sent no start: its failure is logged and
    %% returned, and an exit here would read as an orderly stop.
    _ = S#st.port =/= undefined andalso Phase =/= starting andalso exited(stop_reason(Reason), S),
    cleanup(S),
    ok.

stop_reason(normal) -> shutdown;
stop_reason(shutdown) -> shutdown;
stop_reason({shutdown, _}) -> shutdown;
stop_reason(Crash) -> {worker_down, Crash}.

% @private What a crash report and sys:get_status show of a worker: its shape,
% never its options' environment (it may hold secrets), the arguments of its
% calls or the bytes of a reply (they may be secret, or hundreds of MiB).
-spec format_status(map()) -> map().
format_status(Status) ->
    maps:map(fun(state, S = #st{}) -> summary(S);
                (message, Message) -> status_message(Message);
                (_, Value) -> Value
             end, Status).

% @private A message as format_status/1 shows it: a call without its
% arguments, port data as its size; anything else as it is.
-spec status_message(term()) -> term().
status_message({call, Ref, M, F, Args, Tables, Deadline, Load}) when is_list(Args) ->
    {call, Ref, M, F, {arguments, length(Args)}, Tables, Deadline, Load};
status_message({Port, {data, Data}}) when is_port(Port), is_binary(Data) ->
    {Port, {data, {bytes, byte_size(Data)}}};
status_message(Message) ->
    Message.

summary(#st{opts = Opts, exe = Exe, os_pid = OsPid, phase = Phase, queue = Q, busy = Busy, next_id = Next}) ->
    #{tether_worker => Phase, python => Exe, os_pid => OsPid, modules => maps:get(modules, Opts, []),
      queued => queue:len(Q), next_id => Next,
      running => case Busy of
                     #busy{req = #req{module = M, function = F}, id = Id} -> {Id, M, F};
                     undefined -> none
                 end}.

cleanup(S = #st{dir = Dir}) ->
    _ = close_port(S),
    case S#st.args_file of
        {_Path, Fd} -> file:close(Fd);
        undefined -> ok
    end,
    tether_private:remove_dir(Dir).

%% ------------------------------------------------------------------ calls

dispatch(S = #st{phase = ready, busy = undefined, queue = Q}) ->
    case queue:out(Q) of
        {empty, _} -> S;
        {{value, R}, Q1} ->
            case expired(R) of
                true ->  % its caller already has {error, timeout}
                    release(R),
                    dispatch(S#st{queue = Q1});
                false -> send(R, S#st{queue = Q1})
            end
    end;
dispatch(S) -> S.

send(R = #req{module = M, function = F, args = Args, tables = Tables}, S = #st{next_id = Id, port = Port}) ->
    T0 = erlang:monotonic_time(),
    case encode_call(Id, M, F, Args, Tables, S) of
        {ok, Frame, Route, BytesIn, Stages, S1} ->
            catch port_command(Port, Frame),  % a dead port reports its exit status next
            Sent = erlang:monotonic_time(),
            S1#st{busy = #busy{req = R, id = Id, sent = Sent, bytes_in = BytesIn, route = Route,
                               stages = Stages#{start => T0}},
                  next_id = Id + 1};
        {error, Reason, S1} ->
            reply(R, {error, Reason}, #{}),
            release(R),
            dispatch(S1#st{next_id = Id + 1})
    end.

%% Arguments above shm_threshold go to the worker's private arguments file:
%% only a small frame naming it crosses the pipe.
encode_call(Id, stats, stats, [], _Tables, S = #st{form = Form}) ->
    Frame = tether_protocol:stats(Id, Form),
    {ok, Frame, inline, iolist_size(Frame), #{}, S};
encode_call(Id, M, F, Args0, Tables, S = #st{info = Info, reads_bytes = ReadsBytes}) ->
    %% Registered Tether.Type values go in their wire form, at the version the
    %% worker said it reads (its ready's `types'), on either route.
    case tether_etf:to_wire(Args0, peer_types(Info)) of
        {ok, Args} ->
            %% A worker from before the bytes marker would hand it to the handler as a
            %% tuple: refused here, and only such a worker's calls pay for the walk.
            case ReadsBytes orelse tether_args:marked_bytes(Args) of
                Path when is_binary(Path) -> {error, {bad_request, old_worker(Path, Info)}, S};
                _ -> encode_args(Id, M, F, Args, Tables, S)
            end;
        {error, Reason} -> {error, {encode, Reason}, S}
    end.

old_worker(Path, Info) ->
    Vsn = case maps:get(tether, Info, undefined) of
              V when is_binary(V) -> V;
              _ -> <<"?">>
          end,
    iolist_to_binary([Path, ": Tether.bytes/1 (tether_args:bytes/1) needs a worker that reads ",
                      atom_to_binary(?TAG_BYTES), ", and this worker's tether (", Vsn,
                      ") does not: upgrade tether in the worker's Python environment"]).

%% Not lists:member/2: the ready is Python's, and an improper list must not raise.
listed(X, [X | _]) -> true;
listed(X, [_ | Rest]) -> listed(X, Rest);
listed(_, _) -> false.

peer_types(#{types := Types}) when is_map(Types) -> Types;
peer_types(_) -> #{}.

encode_args(Id, M, F, Args, Tables, S = #st{opts = #{shm_threshold := Threshold}}) ->
    %% Everything that can raise is in the try's body: an exception in an `of' clause is not caught.
    try encoded(Id, M, F, Args, Tables, erlang:external_size(Args) > Threshold, S)
    catch error:Reason -> {error, {encode, Reason}, S}
    end.

%% A walk of the arguments for funs costs 0.09 us for a small map; scanning
%% the encoded message for their tags first cost more than it saved.
encoded(Id, M, F, Args, Tables, Large, S = #st{opts = #{max_message := Max}, form = Form}) ->
    case tether_formats:holds_fun(Args) of
        true -> {error, funs_refused, S};
        false when Large -> shm_args(Id, M, F, Args, Tables, S);
        false ->
            Frame = tether_protocol:call(Id, M, F, Args, Tables, #{}, Form),
            case iolist_size(Frame) of
                Size when Size =< Max -> {ok, Frame, inline, Size, #{encode_end => erlang:monotonic_time()}, S};
                %% Python would answer, then exit: its stream would be out of step.
                Size -> {error, {message_too_large, Size, Max}, S}
            end
    end.

%% Arguments over shm_threshold: written to the arguments file, and a small
%% frame naming them crosses the pipe.
shm_args(Id, M, F, Args, Tables, S = #st{form = Form}) ->
    case args_file(S) of
        {ok, Path, Fd, S1} ->
            %% Large binaries are written from where they are, not copied first.
            ArgsFrame = tether_args:frame(Args),
            Plain = tether_args:plain(Args),
            T1 = erlang:monotonic_time(),
            case file:pwrite(Fd, 0, ArgsFrame) of
                ok ->
                    Len = iolist_size(ArgsFrame),
                    S2 = shm_used(S1#st{args_size = max(Len, S1#st.args_size)}),
                    Frame = tether_protocol:call(Id, M, F, {shm, unicode:characters_to_binary(Path), Len},
                                                 Tables, #{plain => Plain}, Form),
                    {ok, Frame, shm, Len + iolist_size(Frame),
                     #{encode_end => T1, write => erlang:monotonic_time() - T1}, S2};
                %% Part written (a full file system, say): the file would keep
                %% that space from every other user of the directory.
                {error, Reason} -> {error, {args_file, Path, Reason}, drop_args_file(S1)}
            end;
        {error, Reason} -> {error, Reason, S}
    end.

%% Shared memory kept between calls (the arguments file here, Python's
%% mapping of it and its reply regions) stays while calls keep using it: a
%% large call then writes to memory already faulted in. Once none has for
%% shm_keep ms, the file is removed and Python is told to let go of the rest
%% (the release_shm notice), so that one large call does not hold its size
%% in memory for the worker's life. Removed, not truncated: a handler that
%% kept a view of its arguments past the call (docs/format.md §8 says to
%% copy) reads stale bytes instead of taking a SIGBUS.
shm_used(S = #st{opts = #{shm_keep := Keep}, shm_timer = Timer}) ->
    S1 = S#st{shm_used = erlang:monotonic_time(millisecond)},
    case Keep =:= infinity orelse Timer =/= undefined of
        true -> S1;
        false -> S1#st{shm_timer = erlang:start_timer(Keep, self(), release_shm)}
    end.

release_shm(S = #st{opts = #{shm_keep := Keep}, shm_used = Used}) ->
    Idle = erlang:monotonic_time(millisecond) - Used,
    if
        Idle < Keep ->
            S#st{shm_timer = erlang:start_timer(Keep - Idle, self(), release_shm)};
        S#st.busy =/= undefined; S#st.cancel =/= undefined ->  % Python may be reading it: look again later
            S#st{shm_timer = erlang:start_timer(max(Keep, ?TRIM_RECHECK), self(), release_shm)};
        true ->
            (drop_args_file(S))#st{shm_timer = undefined}
    end.

drop_args_file(S) ->
    case S#st.args_file of
        {Path, Fd} -> _ = file:close(Fd), _ = file:delete(Path);
        undefined -> ok
    end,
    %% A Python starting again holds nothing yet; one that is ready lets go of what it kept.
    S#st.tells_release andalso S#st.phase =:= ready
        andalso (catch port_command(S#st.port, tether_protocol:release_shm(S#st.form))),
    S#st{args_file = undefined, args_size = 0}.

args_file(S = #st{args_file = {Path, Fd}}) -> {ok, Path, Fd, S};
args_file(S = #st{dir = Dir}) ->
    case tether_private:create_file(Dir, "tether-args-") of
        {ok, Path, Fd} -> {ok, Path, Fd, S#st{args_file = {Path, Fd}}};
        Error -> Error
    end.

on_message({ok, {reply, Id, Result}}, Size, S = #st{busy = #busy{id = Id}}) ->
    {noreply, finish(Result, Size, S)};
on_message({ok, {reply, Id, _}}, _Size, S = #st{cancel = {Id, Timer}}) ->
    cancel_timer(Timer),
    {noreply, cancelled(S)};
on_message({ok, {reply, _, {error, _} = Error}}, Size, S = #st{busy = #busy{}}) ->
    %% Python could not read our request well enough to know its id.
    {noreply, finish(Error, Size, S)};
on_message({ok, {log, Level, Logger, Message, Meta}}, _Size, S) ->
    log(Level, Logger, Message, Meta, S),
    {noreply, S};
on_message({ok, {alert, Name, State, Message, Figures, Suggestion}}, _Size, S = #st{os_pid = OsPid}) ->
    alert(#{name => Name, state => State, message => Message, figures => Figures, suggestion => Suggestion,
            worker => self(), os_pid => OsPid}),
    {noreply, firing(Name, State, {Message, Figures, Suggestion}, S)};
on_message({ok, {ready, Info}}, _Size, S = #st{phase = starting}) ->
    case tether_protocol:check_ready(Info) of
        {ok, _} -> {noreply, dispatch(ready(Info, S))};
        {error, Reason} -> start_failed(Reason, S)
    end;
on_message({ok, {refused, Reason}}, _Size, S = #st{phase = starting}) ->
    start_failed(Reason, S);
on_message({error, Reason}, Size, S = #st{busy = #busy{}}) ->
    %% Most likely the reply itself, e.g. naming atoms this node does not know.
    {noreply, finish({error, Reason}, Size, S)};
on_message({error, _}, _Size, S = #st{cancel = {_Id, Timer}}) ->
    cancel_timer(Timer),
    {noreply, cancelled(S)};
on_message(Other, _Size, S) ->
    logger:warning("tether worker ~p: unexpected message from Python: ~0tP", [self(), Other, 20],
                   log_meta(S)),
    {noreply, S}.

finish(Result, Size, S = #st{busy = B = #busy{req = R, sent = Sent, bytes_in = In, route = Route},
                             arrived = Arrived}) ->
    {Result1, Out, Route1, Read} =
        case Result of
            {ok, _} ->
                case expired(R) of  % its caller has {error, timeout}: the regions need not be read
                    true -> {{error, timeout}, Size, Route, #{}};
                    false -> resolved(Result, Size, Route, S)
                end;
            {error, _} -> {Result, Size, Route, #{}};
            Other -> {{error, {unexpected_reply, Other}}, Size, Route, #{}}
        end,
    Done = erlang:monotonic_time(),
    %% The stages stay timestamps here: only measure/5 wants them, and it
    %% converts them in the caller, off this process's path to the next call.
    %% Queued until this process took the call up: encoding and writing the
    %% arguments are stages of their own, not waiting.
    Start = maps:get(start, B#busy.stages, Sent),
    reply(R, Result1, #{queue_time => Start - R#req.enqueued, bytes_in => In, bytes_out => Out,
                        route => Route1, stages => {timestamps, B, Arrived, Done, Read}}),
    release(R),
    %% This process held the call's large binaries: let go of them now, so
    %% the allocator reuses their memory (already faulted in) for the next one.
    In + Out >= ?LARGE_CALL andalso erlang:garbage_collect(),
    %% A call through shared memory, either way, used it until its reply: the
    %% quiet spell after which it is let go of starts there, not when it was
    %% sent. An error reply counts too: one that failed to resolve may have
    %% left frames in a region, and arming the timer for nothing costs nothing.
    S1 = S#st{busy = undefined},
    S2 = case Route =:= shm orelse Route1 =:= shm orelse element(1, Result1) =:= error of
             true -> shm_used(S1);
             false -> S1
         end,
    case Result1 of
        {error, {embedded_shm, Path, read_timeout}} -> stuck_region(Path, S2);
        _ -> dispatch(S2)
    end.

%% A reply's value with its embedded frames read and decoded.
resolved({ok, Value}, Size, Route, S = #st{busy = #busy{req = R}}) ->
    case tether_embed:resolve(Value, allow_shm(S), bounded_read(R#req.deadline, S#st.os_pid)) of
        {ok, Value1, #{shm_bytes := 0} = E} -> {{ok, Value1}, Size, Route, E};
        {ok, Value1, #{shm_bytes := Shm} = E} -> {{ok, Value1}, Size + Shm, shm, E};
        {error, {embedded_shm, _, read_slow}} -> {{error, timeout}, Size, Route, #{}};
        {error, Reason} -> {{error, Reason}, Size, Route, #{}}
    end.

%% Opening a region Python named can block in the kernel: a lease (fcntl
%% F_SETLEASE) that Python holds on it makes open(2) wait up to the kernel's
%% lease-break-time (45 s), in a dirty I/O scheduler. Each read runs in a
%% process of its own, given until the call's deadline (at most READ_MAX).
%% One that did not finish is stuck for as long as Python holds what blocks
%% it: Python is killed at once, which lets it go. First, before anything
%% else: with every dirty I/O scheduler stuck so, the node cannot even load
%% code (a log line's formatter) until then.
bounded_read(Deadline, OsPid) ->
    fun(Path, Offset, Len) ->
        Self = self(),
        {Pid, Mref} = spawn_monitor(fun() ->
                                        Opened = fun() -> Self ! {self(), opened} end,
                                        Self ! {self(), {read, tether:read_frame(Path, Offset, Len, Opened)}}
                                    end),
        await_read(Pid, Mref, Deadline, OsPid, false)
    end.

%% The open gets OPEN_GRACE even past the deadline: a deadline that passed while
%% Python wrote the reply says nothing of the region. A read that outlasts the
%% deadline once the file is open is given up without touching Python.
await_read(Pid, Mref, Deadline, OsPid, Opened) ->
    Wait = case {Opened, Deadline} of
               {false, _} -> min(max(remaining(Deadline), ?OPEN_GRACE), ?READ_MAX);
               {true, infinity} -> infinity;  % open: a pread, as long as the caller waits
               {true, _} -> remaining(Deadline)
           end,
    receive
        {Pid, opened} -> await_read(Pid, Mref, Deadline, OsPid, true);
        {Pid, {read, Result}} -> erlang:demonitor(Mref, [flush]), Result;
        {'DOWN', Mref, process, Pid, Why} -> {error, {reader_down, Why}}
    after Wait ->
        Opened orelse tether_python:signal(OsPid, kill),
        exit(Pid, kill),
        {error, case Opened of true -> read_slow; false -> read_timeout end}
    end.

%% After a read that did not finish: Python was killed, and is started again
%% once its exit arrives. No call is sent to it meanwhile (phase cancelling;
%% a pool routes around it).
stuck_region(Path, S = #st{os_pid = OsPid}) ->
    logger:warning("tether worker ~p: Python (os pid ~p) named a region that could not be opened before the "
                   "call's deadline nor within ~p ms (~ts: a lease or lock held on it?); killed it",
                   [self(), OsPid, ?OPEN_GRACE, Path], log_meta(S)),
    S1 = S#st{phase = cancelling, killed = <<"a region it named could not be opened">>},
    notify(cancelling, S1),
    S1.

%% A call's figures with each stage in microseconds; `read' and `decode' as
%% tether_embed measured them.
in_microseconds(Stats = #{stages := {timestamps, B, Arrived, Done, Read}}) ->
    Stats#{stages := stages(B, Arrived, Done, Read)};
in_microseconds(Stats) -> Stats.

stages(#busy{stages = St, sent = Sent}, Arrived, Done, Read) ->
    Start = maps:get(start, St, Sent),
    EncodeEnd = maps:get(encode_end, St, Sent),
    ReadT = maps:get(read_time, Read, 0),
    DecodeT = Done - Arrived - ReadT,
    maps:map(fun(_, T) -> erlang:convert_time_unit(T, native, microsecond) end,
             #{encode => EncodeEnd - Start, write => maps:get(write, St, 0),
               python => Arrived - Sent, read => ReadT, decode => DecodeT}).

reply(#req{from = From}, Result, Stats) -> gen_server:reply(From, {tether_reply, Result, Stats}).

expired(#req{deadline = infinity}) -> false;
expired(#req{deadline = D}) -> erlang:monotonic_time(millisecond) >= D.

%% The worker may read only its Python's regions: regular `tether-' files in
%% this worker's private directory (not links, not another worker's arguments
%% file), or its memfds, `/proc/<pid>/fd/<n>' exactly.
%% The check is made for every reply, but works the directories out only when
%% a reply names a region: working them out for each reply cost 0.23 us of the
%% BEAM's CPU a call, which bounds a pool of 2.
allow_shm(#st{os_pid = OsPid, dir = Dir}) ->
    fun(Path) -> own_region(Path, Dir, OsPid) end.

own_region(Path, Dir, OsPid) ->
    Own = unicode:characters_to_binary(Dir),
    Proc = iolist_to_binary(["/proc/", integer_to_list(OsPid), "/fd"]),
    case filename:dirname(Path) of
        Own -> region_file(Path);
        Proc -> re:run(filename:basename(Path), "^[0-9]+$", [{capture, none}]) =:= match;
        _ -> false
    end.

region_file(Path) ->
    case filename:basename(Path) of
        <<"tether-", _/binary>> ->
            case file:read_link_info(Path, [raw]) of
                {ok, #file_info{type = regular}} -> true;
                _ -> false
            end;
        _ -> false
    end.

%% ------------------------------------------------------------------ cancelling

cancel(Id, S = #st{os_pid = OsPid, opts = #{cancel_grace := Grace}, dir = Dir}) ->
    name_cancelled(Dir, Id),
    tether_python:signal(OsPid, usr1),
    S1 = S#st{phase = cancelling, cancel = {Id, erlang:start_timer(Grace, self(), {grace, Id})}},
    notify(cancelling, S1),
    S1.

%% A member that cannot start again stops: the calls a pool routed to it go
%% back to their callers to be routed once more, instead of failing with it.
%% (Calls queued behind a cancel or a restart wait for it, as they would for
%% the call ahead of them: at most cancel_grace, or a start.)
reroute(S = #st{queue = Q}) ->
    {Routed, Kept} = lists:partition(fun(#req{load = L}) -> L =/= undefined end, queue:to_list(Q)),
    [begin reply(R, {error, tether_reroute}, #{}), release(R) end || R <- Routed],
    S#st{queue = queue:from_list(Kept)}.

%% The signal carries no data: the call it cancels is named in the private
%% directory first (written aside, then renamed into place, so Python never
%% reads half of it). Python then stops that call only, even one it has not
%% started yet, and a signal that arrives late touches no other call. Without
%% the file Python cancels whatever runs.
name_cancelled(Dir, Id) ->
    Path = filename:join(Dir, ?CANCEL_FILE),
    Aside = filename:join(Dir, ?CANCEL_FILE ".new"),
    %% 0600 as every file in the directory (docs/format.md §7): write_file takes the umask's mode.
    _ = file:delete(Aside),  % created anew, exclusively: never written through something already there
    case file:write_file(Aside, integer_to_list(Id), [raw, exclusive]) =:= ok andalso file:change_mode(Aside, 8#600) =:= ok
             andalso file:rename(Aside, Path) of
        ok -> ok;
        _ -> _ = file:delete(Path), ok
    end.

cancelled(S) ->
    %% The dropped reply may have come through a region: let go of it in time too.
    S1 = shm_used(S#st{phase = ready, cancel = undefined}),
    notify(ready, S1),
    dispatch(S1).

%% ------------------------------------------------------------------ Python exits

on_exit(Status, S = #st{phase = starting}) ->
    start_failed(exited_before_ready(Status, S), S);
on_exit(Status, S = #st{busy = Busy, cancel = Cancel}) ->
    case Busy of
        #busy{req = R} ->
            reply(R, {error, {worker_exit, Status}}, #{}),
            release(R);
        undefined -> ok
    end,
    case Cancel of
        {_, CancelTimer} -> cancel_timer(CancelTimer);
        undefined -> ok
    end,
    case tether_python:stderr(S#st.stderr, S#st.stderr_seen) of
        {<<>>, _} -> ok;
        {Text, _} -> log(warning, <<"stderr">>, Text, #{}, S)
    end,
    S0 = exited({exit_status, Status}, S),
    tether_routes:forget_python(),
    %% Killed by this worker, it did not exit of itself: not a quick exit to back off from.
    Delay = restart_delay(Busy =:= undefined andalso Cancel =:= undefined andalso S#st.killed =:= undefined, S),
    Cause = case S#st.killed of
                undefined -> exit_cause(Status);
                Why -> [" (killed by this worker: ", Why, ")"]
            end,
    logger:warning("tether worker ~p: Python (os pid ~p) exited~ts~ts; ~ts",
                   [self(), S#st.os_pid, Cause, running_when(Busy), restarting(Delay)],
                   log_meta(S)),
    %% Calls a pool routed here go back to be routed again: the restart may import for
    %% seconds while a peer frees up; once ready, this member asks a busy peer for work.
    S1 = S0#st{busy = undefined, cancel = undefined, killed = undefined},
    notify(starting, S1),
    restart_in(Delay, reroute(S1)).

%% How long to wait before starting Python again, and the count of quick
%% idle exits that decides it.
restart_delay(Idle, #st{started = Started, quick_exits = N}) ->
    Lived = erlang:convert_time_unit(erlang:monotonic_time() - Started, native, millisecond),
    case Idle andalso Lived < ?STABLE_MS of
        false -> {0, 0};
        true when N =:= 0 -> {0, 1};
        true -> {min(?RESTART_MAX, ?RESTART_MIN bsl min(N - 1, 16)), N + 1}
    end.

restart_in({0, Quick}, S) -> restart(S#st{quick_exits = Quick});
restart_in({Ms, Quick}, S) ->
    %% Starting, as far as callers and a pool can tell; no os pid, so that nothing signals a reused one.
    notify(starting, S),
    erlang:send_after(Ms, self(), restart_python),
    {noreply, S#st{quick_exits = Quick, phase = starting, os_pid = undefined}}.

%% Exit statuses past 128 are a signal's (the port's convention); the common
%% ones say what to look at.
exit_cause(Status) when Status > 128 ->
    Sig = Status - 128,
    Hint = case Sig of
               9 -> " (SIGKILL: the kernel's OOM killer, or an operator)";
               7 -> " (SIGBUS: shared memory full or truncated? see df /dev/shm)";
               11 -> " (SIGSEGV: a crash in native code)";
               6 -> " (SIGABRT: an abort in native code)";
               15 -> " (SIGTERM)";
               _ -> ""
           end,
    io_lib:format(" on signal ~b~ts", [Sig, Hint]);
exit_cause(Status) -> io_lib:format(" with status ~b", [Status]).

running_when(#busy{req = #req{module = M, function = F}}) -> io_lib:format(" running ~ts.~ts", [M, F]);
running_when(_) -> " between calls".

restarting({0, _}) -> "starting it again";
restarting({Ms, N}) -> io_lib:format("exit ~b in a row soon after starting: starting it again in ~b ms", [N, Ms]).

%% A ready Python is gone: its exit and the clearing of its alerts, and the
%% pool told, so that it reports neither again when this process exits.
exited(Reason, S = #st{os_pid = OsPid, alerts = Alerts}) ->
    tether_telemetry:python_exited(self(), OsPid, Reason, Alerts),
    S1 = S#st{alerts = #{}},
    notify({python, undefined, #{}}, S1),
    S1.

%% The alerts this Python has firing. A pool keeps a copy: if this process is
%% killed outright, the pool clears them (tether_pool's member_down).
firing(Name, firing, Alert, S = #st{alerts = A}) -> tell_pool(S#st{alerts = A#{Name => Alert}});
firing(Name, cleared, _, S = #st{alerts = A}) -> tell_pool(S#st{alerts = maps:remove(Name, A)});
firing(_, _, _, S) -> S.

tell_pool(S = #st{os_pid = OsPid, alerts = Alerts}) ->
    notify({python, OsPid, Alerts}, S),
    S.

restart(S = #st{stderr = Old}) ->
    _ = Old =/= undefined andalso file:delete(Old),
    case launch(S#st{stderr = undefined}) of
        {ok, S1} -> {noreply, S1};
        {error, Reason, S1} -> start_failed(Reason, S1)
    end.

%% A restart that cannot complete ends the worker: its supervisor (or pool)
%% decides what happens next. Calls a pool routed here are routed again;
%% other queued callers learn why. A pool member leaves the log to its pool,
%% which returns a first start's failure to its caller rather than logging it
%% once per member.
start_failed(Reason, S0) ->
    S = #st{queue = Q} = reroute(S0),
    cancel_timer(S#st.start_timer),
    [begin reply(R, {error, {worker_start_failed, Reason}}, #{}), release(R) end || R <- queue:to_list(Q)],
    _ = S#st.notify =:= undefined andalso
        logger:error("tether worker ~p: Python could not start: ~0tP", [self(), Reason, 30], log_meta(S)),
    {stop, {shutdown, {worker_start_failed, Reason}}, S#st{queue = queue:new()}}.

close_port(S = #st{port = undefined}) -> S;
close_port(S = #st{port = Port}) ->
    catch port_close(Port),
    S#st{port = undefined}.

%% ------------------------------------------------------------------ helpers

log(Level, Logger, Message, Meta, S = #st{os_pid = OsPid}) ->
    tether_pylog:forward(Level, Logger, Message, Meta, pooled(S, #{os_pid => OsPid})).

%% The worker's own lines carry what Python's records do (tether_pylog), so a
%% handler can tell which worker, Python and pool one is about.
log_meta(S = #st{os_pid = OsPid}) ->
    pooled(S, #{domain => [tether], tether_worker => self(), os_pid => OsPid}).

pooled(#st{pool = undefined}, Meta) -> Meta;
pooled(#st{pool = Pool}, Meta) -> Meta#{tether_pool => Pool}.

%% A Python alert (tether.metrics) as a `[tether, alert]' event. Its WARNING on
%% the `tether.alerts' logger already reaches Logger as a forwarded record.
alert(Meta) ->
    tether_telemetry:execute([tether, alert], #{system_time => erlang:system_time()}, Meta).

%% A pool member with nothing to do and calls still counted to it looks
%% again after LOAD_CHECK (gen_server's timeout: a message in between cancels
%% it). A call on its way arrives long before; one whose caller died never will.
%% One with nothing counted to it asks the peer with the longest queue for a
%% call, so that a call queued behind a long one runs here instead.
settle({noreply, S = #st{load = Load}}) when Load =/= undefined ->
    case idle(S) andalso atomics:get(Load, 1) of
        false -> {noreply, S};
        0 -> ask_for_work(S), {noreply, S};
        N -> case stray(N) of
                 true -> {noreply, S, ?LOAD_CHECK};
                 false -> {noreply, S}
             end
    end;
settle(Result) -> Result.

ask_for_work(#st{notify = Pool}) when is_pid(Pool) ->
    case tether_pool:busiest_peer(Pool, self()) of
        none -> ok;
        Peer -> Peer ! {tether_pool, give_back}, ok
    end;
ask_for_work(_) -> ok.

%% A peer with nothing to do asks for a call: the oldest one a pool routed
%% here that still waits goes back to its caller to be routed again (not
%% the one Python runs; a call checked out here stays).
give_back(S = #st{queue = Q}) ->
    case lists:splitwith(fun(#req{load = L}) -> L =:= undefined end, queue:to_list(Q)) of
        {_, []} -> S;
        {Before, [R | After]} ->
            reply(R, {error, tether_reroute}, #{}),
            release(R),
            S#st{queue = queue:from_list(Before ++ After)}
    end.

idle(#st{phase = ready, busy = undefined, cancel = undefined, queue = Q}) -> queue:is_empty(Q);
idle(_) -> false.

%% A count an idle member should not have. A checkout's hold is not one:
%% the pool lifts it, not this process.
stray(N) -> N =/= 0 andalso not tether_pool:held(N).

%% A call leaves this worker (answered, dropped or cancelled): stop watching
%% its caller, and count it off its pool member's load. (A monitor that fired
%% is gone already; demonitoring it is harmless.)
release(#req{mref = Mref, load = Load}) ->
    erlang:demonitor(Mref, [flush]),
    Load =:= undefined orelse atomics:sub(Load, 1, 1),
    ok.

check_in(none) -> ok;
check_in({Pool, CheckoutRef}) -> gen_server:cast(Pool, {checkin, CheckoutRef}).

notify(_Phase, #st{notify = undefined}) -> ok;
notify(Phase, #st{notify = Pid}) -> Pid ! {tether_worker, self(), Phase}, ok.

cancel_timer(undefined) -> ok;
cancel_timer(Timer) -> erlang:cancel_timer(Timer, [{async, true}, {info, false}]).

deadline(infinity) -> infinity;
deadline(Ms) -> erlang:monotonic_time(millisecond) + Ms.

remaining(infinity) -> infinity;
remaining(Deadline) -> max(0, Deadline - erlang:monotonic_time(millisecond)).

