#!/usr/bin/env escript
%%! -noshell
%% The BEAM side of `tether bench`'s beam group: a real erl driving
%% `python -m tether.worker`. The Python harness (src/tether/bench/beam.py)
%% compiles beam/src into a scratch directory, puts it on the code path and runs
%% this script with the Python to start, the number of small rounds and the
%% tensor size in MiB. It prints one "name microseconds" line per figure.
%% It lives outside beam/src so that mix never compiles it into the library.
%%
%% Compiled, not interpreted: the baseline echo must not carry erl_eval's overhead.
-mode(compile).
main([Python, N, Mib]) ->
    Rounds = list_to_integer(N),
    Size = list_to_integer(Mib) * 1048576,
    Exe = filename:absname(Python),
    %% The minimal baseline: a raw {packet, 4} echo with the worker program.
    Port = open_port({spawn_executable, Exe}, [{args, ["-m", "tether.worker", "--module", "tether.demo"]},
                                              {packet, 4}, binary, exit_status, use_stdio]),
    Ping = <<"PING", 0:(96 * 8)>>,
    Echo = fun() -> port_command(Port, Ping), receive {Port, {data, _}} -> ok end end,
    [Echo() || _ <- lists:seq(1, 200)],
    EchoUs = median([element(1, timer:tc(Echo)) || _ <- lists:seq(1, Rounds)]),
    {ok, W} = tether_worker:start(#{python => Exe, modules => [<<"tether.demo">>]}),
    Map = #{id => 1, name => <<"small">>, price => 9.5, tags => [a, b], ok => true},
    Call = fun() -> {ok, _} = tether_worker:call(W, <<"tether.demo">>, <<"echo">>, [Map]) end,
    [Call() || _ <- lists:seq(1, 200)],
    CallUs = median([element(1, timer:tc(Call)) || _ <- lists:seq(1, Rounds)]),
    {ok, Inline} = tether_worker:start(#{python => Exe, modules => [<<"tether.demo">>], shm_threshold => 1 bsl 40}),
    Tensor = iolist_to_binary(tether:tensor(binary:copy(<<1.5:32/float-native>>, Size div 4), {f, 32}, {Size div 4})),
    Big = fun(Wk) -> fun() -> {ok, #{data := D}} = tether_worker:call(Wk, <<"tether.demo">>, <<"echo">>, [Tensor], 120000), byte_size(D) end end,
    Size = (Big(W))(), Size = (Big(Inline))(),
    ShmUs = median([element(1, timer:tc(Big(W))) || _ <- lists:seq(1, 9)]),
    InlineUs = median([element(1, timer:tc(Big(Inline))) || _ <- lists:seq(1, 5)]),
    io:format("echo_us ~p~ncall_us ~p~nshm_us ~p~ninline_us ~p~n", [EchoUs, CallUs, ShmUs, InlineUs]).
median(L) -> lists:nth(length(L) div 2 + 1, lists:sort(L)).
