#!/usr/bin/env escript
%%! -noshell
%% The BEAM side of `tether bench`'s beam group: a real erl driving
%% `python -m tether.worker`. The Python harness (src/tether/bench/beam.py)
%% compiles beam/src into a scratch directory, puts it on the code path and runs
%% this script with the Python to start, the number of small rounds and the
%% tensor size in MiB. It prints one "name microseconds" line per figure (all
%% integers, but for the small calls' and the pools', given to 0.01 µs; a
%% figure it could not take, e.g. erlport's, is left out and the
%% reason goes to stderr). It lives outside beam/src so that mix never compiles
%% it into the library.
%%
%% Small calls, all in the same run, interleaved in blocks so that load from
%% elsewhere falls on each alike, medians of every sample:
%%   echo_us      a raw {packet, 4} echo (the worker's PING)
%%   framed_us    a tether-framed echo: the map encoded as a frame, decoded and
%%                re-encoded by Python ({echo, Term}), decoded here; no handler
%%   compact_us   the same echo as compact messages (docs/format.md §8), the
%%                form tether_worker sends calls in
%%   call_us      tether_worker:call with a 5-key map (Python's tether.demo.echo)
%%   call_nospin_us  the same from a worker started with spin_us => 0: Python
%%                sleeps in read() between calls instead of polling first
%%   erlport_us   erlport's python:call with the same map and function, when
%%                erlport builds from ../shared/peers/erlport (or $TETHER_ERLPORT_SRC)
%% and the call's parts measured in place (medians): call_encode_us,
%% call_python_us (request out to reply in), call_decode_us, call_hops_us (the
%% rest: the caller -> gen_server -> port hops and back), py_read_us,
%% py_handler_us, py_write_us (inside Python), call_wakeup_us (call_python_us
%% minus Python's own time: the pipe and the two process wake-ups).
%%
%% The tensor round trip through shared memory (shm_us, and its stages
%% shm_encode_us, shm_write_us, shm_python_us, shm_read_us, shm_decode_us),
%% through the pipe (inline_us), and its limit in the same run: the BEAM's own
%% pwrite and pread of the same bytes on a warm file and Python's pooled write
%% (limit_pwrite_us, limit_pread_us, limit_pywrite_us, limit_us).
%%
%% First, "info otp|schedulers_online|schedulers|logical_processors|bound N"
%% lines: the emulator the figures were taken on (ERL_FLAGS such as +S 1 or
%% +sbt db change them; bound is 1 when the schedulers are bound to CPUs).
%%
%% A fourth argument, "throughput", runs only the info lines and the pools'
%% small-call throughput (pool2_call_us, pool1_call_us, worker_call_us): the
%% harness runs it again in an emulator with its schedulers bound.
%%
%% Compiled, not interpreted: the baseline echo must not carry erl_eval's overhead.
-mode(compile).

-define(BLOCKS, 10).
-define(BULK_ROUNDS, 5).

main([Python, N, _Mib, "throughput"]) ->
    vm(),
    throughput(filename:absname(Python), list_to_integer(N));
main([Python, N, Mib]) ->
    Rounds = list_to_integer(N),
    Size = list_to_integer(Mib) * 1048576,
    Exe = filename:absname(Python),
    vm(),
    small(Exe, Rounds),
    pool(Exe, Rounds),
    bulk(Exe, Size).

%% What the figures depend on, as "info key value" lines (three fields, so
%% that the harness never takes them for a figure).
vm() ->
    Cpus = case erlang:system_info(logical_processors_available) of
               unknown -> erlang:system_info(logical_processors);
               N -> N
           end,
    [io:format("info ~s ~p~n", [K, V])
     || {K, V} <- [{otp, list_to_integer(erlang:system_info(otp_release))},
                   {schedulers_online, erlang:system_info(schedulers_online)},
                   {schedulers, erlang:system_info(schedulers)},
                   {logical_processors, Cpus},
                   {bound, case tether_options:schedulers_bound() of true -> 1; false -> 0 end}]].

%% ------------------------------------------------------------------ pools

%% Concurrency: four 0.5 s calls (time.sleep) at once on a pool of 4
%% (pool4_sleep_us; #11's bar is 0.7 s). Throughput: 8 callers making the
%% 5-key echo call on a pool of 2, on a pool of 1 and on one tether_worker (no
%% pool), per call, medians of five alternating runs (pool2_call_us,
%% pool1_call_us, worker_call_us; #11's bar is 1.6x one worker's throughput).
pool(Exe, Rounds) ->
    {ok, P4} = tether_pool:start(#{python => Exe, modules => [<<"time">>], size => 4}),
    Sleep = fun() -> {ok, _} = tether_pool:call(P4, <<"time">>, <<"sleep">>, [0.5], 5000) end,
    io:format("pool4_sleep_us ~p~n", [median([elapsed(fun() -> together(4, Sleep) end) || _ <- lists:seq(1, 3)])]),
    tether_pool:stop(P4),
    throughput(Exe, Rounds).

throughput(Exe, Rounds) ->
    Map = #{id => 1, name => <<"small">>, price => 9.5, tags => [a, b], ok => true},
    PerCaller = max(20, Rounds div 8),
    %% Both pools live together and their runs alternate, so that load from
    %% elsewhere falls on each alike (as the small calls' blocks do).
    Pools = [begin
                 {ok, P} = tether_pool:start(#{python => Exe, modules => [<<"tether.demo">>], size => Size}),
                 Echo = fun() -> {ok, _} = tether_pool:call(P, <<"tether.demo">>, <<"echo">>, [Map], 5000) end,
                 {io_lib:format("pool~p", [Size]), P, Echo}
             end || Size <- [2, 1]],
    %% One worker is a tether_worker on its own, #11's baseline. (A pool of 1
    %% ran 10 % slower than one until calls went straight to a member's queue.)
    {ok, W} = tether_worker:start(#{python => Exe, modules => [<<"tether.demo">>]}),
    One = fun() -> {ok, _} = tether_worker:call(W, <<"tether.demo">>, <<"echo">>, [Map], 5000) end,
    All = Pools ++ [{"worker", W, One}],
    [together(8, fun() -> [Echo() || _ <- lists:seq(1, 20)] end) || {_, _, Echo} <- All],  % warm-up
    Runs = [{Name, elapsed(fun() -> together(8, fun() -> [Echo() || _ <- lists:seq(1, PerCaller)] end) end)}
            || _ <- lists:seq(1, 5), {Name, _, Echo} <- All],
    [io:format("~s_call_us ~.2f~n", [Name, median([T || {N, T} <- Runs, N =:= Name]) / (8 * PerCaller)])
     || {Name, _, _} <- All],
    [sleeper(P) || {"pool2", P, _} <- [{lists:flatten(N), P, E} || {N, P, E} <- Pools]],
    [tether_pool:stop(P) || {_, P, _} <- Pools],
    tether_worker:stop(W),
    ok.

%% The scheduling class a pool's sleeping member ended the runs in
%% (tether._sched), as "info pool2_sleeper batch:0" (policy:times it went back
%% to normal); none when no member has one (not pinned, not Linux).
sleeper(Pool) ->
    #{workers := Members} = tether_pool:status(Pool),
    Policies = [io_lib:format("~s:~p", [Policy, Starved])
                || M <- Members,
                   {ok, #{<<"worker">> := #{<<"sched">> := #{<<"policy">> := Policy, <<"starved">> := Starved}}}}
                       <- [tether_worker:stats(M)]],
    io:format("info pool2_sleeper ~s~n", [case Policies of [] -> "none"; _ -> lists:join(",", Policies) end]).

%% Run Fun in N processes at once; return when all are done.
together(N, Fun) ->
    Self = self(),
    Pids = [spawn_link(fun() -> Fun(), Self ! {done, self()} end) || _ <- lists:seq(1, N)],
    [receive {done, Pid} -> ok end || Pid <- Pids],
    ok.

elapsed(Fun) ->
    T0 = erlang:monotonic_time(microsecond),
    Fun(),
    erlang:monotonic_time(microsecond) - T0.

%% ------------------------------------------------------------------ small calls

small(Exe, Rounds) ->
    Map = #{id => 1, name => <<"small">>, price => 9.5, tags => [a, b], ok => true},
    Port = raw_worker(Exe),
    Ping = <<"PING", 0:(96 * 8)>>,
    Echo = fun() -> port_command(Port, Ping), receive {Port, {data, _}} -> ok end end,
    Framed = fun() ->
                 port_command(Port, tether:encode({echo, Map})),
                 receive {Port, {data, D}} -> {ok, {echo, _}} = tether:decode(D) end
             end,
    {ok, W} = tether_worker:start(#{python => Exe, modules => [<<"tether.demo">>]}),
    Call = fun() -> {ok, _} = tether_worker:call(W, <<"tether.demo">>, <<"echo">>, [Map]) end,
    {ok, W0} = tether_worker:start(#{python => Exe, modules => [<<"tether.demo">>], spin_us => 0}),
    CallNoSpin = fun() -> {ok, _} = tether_worker:call(W0, <<"tether.demo">>, <<"echo">>, [Map]) end,
    Compact = fun() ->
                  port_command(Port, tether_protocol:compact({echo, Map})),
                  receive {Port, {data, D}} -> {ok, {echo, _}} = tether_protocol:decode(D) end
              end,
    Variants = [{echo_us, Echo}, {framed_us, Framed}, {compact_us, Compact}, {call_us, Call},
                {call_nospin_us, CallNoSpin}] ++ erlport(Exe, Map),
    Samples = interleave(Variants, max(1, Rounds div ?BLOCKS)),
    [io:format("~s ~.2f~n", [Name, median(maps:get(Name, Samples)) / 1000]) || {Name, _} <- Variants],
    parts(W, Map, Rounds),
    tether_worker:stop(W),
    tether_worker:stop(W0),
    port_close(Port).

%% A worker driven by hand: hello, ready, then PING and {echo, Term} only.
raw_worker(Exe) ->
    Port = open_port({spawn_executable, Exe}, [{args, ["-m", "tether.worker", "--module", "tether.demo"]},
                                               {packet, 4}, binary, exit_status, use_stdio]),
    port_command(Port, tether_protocol:hello()),
    receive {Port, {data, Ready}} -> {ok, {ready, _}} = tether_protocol:decode(Ready) end,
    Port.

%% Blocks of K calls of each variant in turn (the order rotates), after a warm-up.
interleave(Variants, K) ->
    [[F() || _ <- lists:seq(1, 200)] || {_, F} <- Variants],
    lists:foldl(
      fun(Block, Acc) ->
              Order = rotate(Variants, Block rem length(Variants)),
              lists:foldl(fun({Name, F}, A) ->
                                  Ts = [ns(F) || _ <- lists:seq(1, K)],
                                  maps:update_with(Name, fun(Old) -> Ts ++ Old end, Ts, A)
                          end, Acc, Order)
      end, #{}, lists:seq(1, ?BLOCKS)).

rotate(L, N) -> {A, B} = lists:split(N, L), B ++ A.

%% One call's nanoseconds: timer:tc's whole microseconds are 4-5 % of a 20 µs call.
ns(F) ->
    T0 = erlang:monotonic_time(nanosecond),
    F(),
    erlang:monotonic_time(nanosecond) - T0.

%% erlport's python:call, if erlport can be built here; else nothing (reason on stderr).
erlport(Exe, Map) ->
    case erlport_ebin() of
        {ok, Ebin} ->
            code:add_patha(Ebin),
            case catch python:start([{python, Exe}]) of
                {ok, P} ->
                    [{erlport_us, fun() -> Map = python:call(P, 'tether.demo', echo, [Map]) end}];
                Other -> skip_erlport({start, Other})
            end;
        {error, Why} -> skip_erlport(Why)
    end.

skip_erlport(Why) ->
    io:format(standard_error, "erlport skipped: ~0tp~n", [Why]),
    [].

%% Compiled once into a scratch lib dir (erlport/ebin, erlport/priv), about a second.
erlport_ebin() ->
    Src = case os:getenv("TETHER_ERLPORT_SRC") of
              false -> filename:join([script_dir(), "..", "..", "..", "shared", "peers", "erlport"]);
              Dir -> Dir
          end,
    Lib = filename:join([os:getenv("TMPDIR", "/tmp"), "tether-bench-" ++ os:getenv("USER", "user"), "erlport"]),
    Ebin = filename:join(Lib, "ebin"),
    case {filelib:is_regular(filename:join(Ebin, "python.beam")), filelib:is_dir(filename:join(Src, "src"))} of
        {true, _} -> {ok, Ebin};
        {false, false} -> {error, {no_erlport_source, Src}};
        {false, true} -> build_erlport(Src, Lib, Ebin)
    end.

build_erlport(Src, Lib, Ebin) ->
    ok = filelib:ensure_dir(filename:join(Ebin, "x")),
    Inc = filename:join(Src, "src"),
    Results = [compile:file(F, [{outdir, Ebin}, {i, Inc}, report_errors])
               || F <- filelib:wildcard(filename:join(Inc, "*.erl"))],
    case lists:all(fun(R) -> element(1, R) =:= ok end, Results) of
        true ->
            {ok, _} = file:copy(filename:join(Inc, "erlport.app.src"), filename:join(Ebin, "erlport.app")),
            os:cmd("cp -r '" ++ filename:join(Src, "priv") ++ "' '" ++ Lib ++ "/'"),
            {ok, Ebin};
        false -> {error, erlport_does_not_compile}
    end.

script_dir() -> filename:dirname(filename:absname(escript:script_name())).

%% The call's parts, in place: the worker's stage timings and Python's own.
parts(W, Map, Rounds) ->
    Echo = fun() -> {ok, _} = tether_worker:call(W, <<"tether.demo">>, <<"echo">>, [Map]) end,
    Runs = [begin
                %% Plain calls between a stats call and the next measured one: the stats
                %% reply takes the BEAM long enough that Python's poll can miss and back
                %% off, and the measured call would then wake a sleeping Python, which the
                %% call above (call_us) does not.
                Echo(), Echo(), Echo(),
                {T, {{ok, _}, #{stages := St}}} =
                    timer:tc(fun() -> tether_worker:measure(W, <<"tether.demo">>, <<"echo">>, [Map], 5000) end),
                {ok, #{<<"worker">> := #{<<"last_call">> := Py}}} = tether_worker:stats(W),
                {T, St, Py}
            end || _ <- lists:seq(1, max(50, Rounds div 4))],
    Med = fun(F) -> median([F(R) || R <- Runs]) end,
    PyUs = fun(Key) -> fun({_, _, Py}) -> round(maps:get(Key, Py) * 1.0e7) / 10 end end,  % to 0.1 us
    Stage = fun(Key) -> fun({_, St, _}) -> maps:get(Key, St) end end,
    PyTotal = fun(R) -> lists:sum([(PyUs(K))(R) || K <- [<<"read_s">>, <<"handler_s">>, <<"write_s">>]]) end,
    Figures = [{call_encode_us, Med(Stage(encode))}, {call_python_us, Med(Stage(python))},
               {call_decode_us, Med(Stage(decode))},
               {call_hops_us, Med(fun({T, St, _}) -> T - lists:sum(maps:values(St)) end)},
               {py_read_us, Med(PyUs(<<"read_s">>))}, {py_handler_us, Med(PyUs(<<"handler_s">>))},
               {py_write_us, Med(PyUs(<<"write_s">>))},
               {call_wakeup_us, Med(fun(R = {_, St, _}) -> maps:get(python, St) - PyTotal(R) end)}],
    [io:format("~s ~s~n", [Name, case V of
                                     F when is_float(F) -> float_to_list(F, [{decimals, 1}]);
                                     I -> integer_to_list(I)
                                 end]) || {Name, V} <- Figures].

%% ------------------------------------------------------------------ the tensor

bulk(Exe, Size) ->
    {ok, W} = tether_worker:start(#{python => Exe, modules => [<<"tether.demo">>]}),
    {ok, Inline} = tether_worker:start(#{python => Exe, modules => [<<"tether.demo">>], shm_threshold => 1 bsl 40,
                                         max_message => 1 bsl 31}),
    Tensor = iolist_to_binary(tether:tensor(binary:copy(<<1.5:32/float-native>>, Size div 4), {f, 32}, {Size div 4})),
    Big = fun(Wk) ->
              fun() ->
                  {{ok, #{data := D}}, Stats} = tether_worker:measure(Wk, <<"tether.demo">>, <<"echo">>, [Tensor], 300000),
                  Size = byte_size(D),
                  Stats
              end
          end,
    _ = (Big(W))(),
    Shm = rounds(Big(W), ?BULK_ROUNDS),
    io:format("shm_us ~p~n", [median([T || {T, _} <- Shm])]),
    [io:format("shm_~s_us ~p~n", [K, median([maps:get(K, St) || {_, #{stages := St}} <- Shm])])
     || K <- [encode, write, python, read, decode]],
    limit(W, Tensor),
    _ = (Big(Inline))(),
    io:format("inline_us ~p~n", [median([T || {T, _} <- rounds(Big(Inline), 3)])]),
    tether_worker:stop(Inline),
    tether_worker:stop(W).

%% Each round timed alone; its result dropped and this process collected
%% before the next, as a caller that lets go of a result does.
rounds(Fun, N) ->
    [begin
         erlang:garbage_collect(),
         timer:tc(Fun)
     end || _ <- lists:seq(1, N)].

%% The limit without a NIF: the BEAM writes the bytes into a warm file and
%% reads them back (it must copy both ways), Python writes its reply into a
%% warm pooled region (Python's read is a mapping: no copy).
limit(W, Tensor) ->
    {ok, Dir} = tether_private:make_dir(tether_private:default_parent()),
    {ok, _Path, Fd} = tether_private:create_file(Dir, "tether-limit-"),
    Size = byte_size(Tensor),
    ok = file:pwrite(Fd, 0, Tensor),  % the file's pages exist from here on: warm
    Write = [T || {T, ok} <- rounds(fun() -> file:pwrite(Fd, 0, Tensor) end, ?BULK_ROUNDS)],
    ReadAll = fun() -> {ok, B} = file:pread(Fd, 0, Size), byte_size(B) end,
    %% Warm-up reads, as the round trip had a warm-up call: the first reads of
    %% this process fault fresh pages in (200-650 ms here), later ones reuse them.
    _ = rounds(ReadAll, 2),
    Read = [T || {T, N} <- rounds(ReadAll, ?BULK_ROUNDS), N =:= Size],
    ok = file:close(Fd),
    tether_private:remove_dir(Dir),
    {ok, PySeconds} = tether_worker:call(W, <<"tether.demo">>, <<"pooled_write">>, [Size], 120000),
    PyUs = round(PySeconds * 1.0e6),
    io:format("limit_pwrite_us ~p~nlimit_pread_us ~p~nlimit_pywrite_us ~p~nlimit_us ~p~n",
              [median(Write), median(Read), PyUs, median(Write) + median(Read) + PyUs]).

median(L) -> lists:nth(length(L) div 2 + 1, lists:sort(L)).
