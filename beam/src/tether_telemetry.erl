%% @doc tether's `:telemetry' events, sent only when the application has the
%% `telemetry' library loaded (it is optional: tether depends on nothing).
%%
%% | event | measurements | metadata |
%% |---|---|---|
%% | `[tether, call, start]' | `monotonic_time', `system_time' | `module', `function', `worker' or `pool', `telemetry_span_context' |
%% | `[tether, call, stop]' | `duration', `queue_time', `bytes_in', `bytes_out', `monotonic_time' | as start, plus `route' (`inline' or `shm'), `result' (`ok' or `error'), `error' when Python answered with an error; a pool's call also names the member that ran it, `worker' |
%% | `[tether, call, exception]' | `duration', `monotonic_time' | as start, plus `kind' (`error'), `reason' (`timeout', `overloaded', `checkout_timeout', `{worker_exit, Status}', `{worker_down, Why}', ...), `stacktrace' (`[]'); a pool's call that reached a member, `worker' |
%% | `[tether, worker, start]' | `duration' (start to ready), `system_time' | `worker', `os_pid', `python', `tether', `modules' |
%% | `[tether, worker, exit]' | `system_time' | `worker', `os_pid', `reason' (`{exit_status, S}', `killed', `shutdown', `{worker_down, Why}'): once per `start', never for a Python that did not get ready |
%% | `[tether, pool, overloaded]' | `queue_length' | `pool', `size', `max_queue' |
%% | `[tether, alert]' | `system_time' | `name', `state' (`firing' or `cleared'), `message', `figures' (a map, binary keys; when cleared, tether's own alerts and a clear given figures send those as it ended, with the firing ones under `<<"fired">>'), `suggestion', `worker', `os_pid': an alert Python's `tether.metrics' raised; those still firing when their Python exits are sent `cleared' after its `exit' |
%%
%% Durations are in native time units (`erlang:convert_time_unit/3').
-module(tether_telemetry).

-export([execute/3, span/2, measured_span/2, events/0, python_exited/4]).

-type event() :: [atom(), ...].
-export_type([event/0]).

%% A call's outcome is an exception when Python never answered it.
-define(EXCEPTIONS, [timeout, overloaded, checkout_timeout]).

%% @doc Every event tether emits.
%%
%% ```
%% true = lists:member([tether, call, stop], tether_telemetry:events()).
%% '''
-spec events() -> [event()].
events() ->
    [[tether, call, start], [tether, call, stop], [tether, call, exception],
     [tether, worker, start], [tether, worker, exit], [tether, pool, overloaded], [tether, alert]].

%% @doc `telemetry:execute/3' when the `telemetry' module is loaded, else nothing.
%%
%% ```
%% ok = tether_telemetry:execute([tether, pool, overloaded], #{queue_length => 0}, #{}).
%% '''
-spec execute(event(), map(), map()) -> ok.
execute(Event, Measurements, Metadata) ->
    Telemetry = telemetry,  % optional: called only once it is loaded, never linked against
    case erlang:function_exported(Telemetry, execute, 3) of
        true -> _ = Telemetry:execute(Event, Measurements, Metadata), ok;
        false -> ok
    end.

%% @private A ready Python is gone: `[tether, worker, exit]', then a
%% `[tether, alert]' `cleared' for each alert it had firing (`Alerts', name
%% to `{Message, Figures, Suggestion}' as it fired). Python can no longer
%% clear them itself, and a consumer that tracks alerts from these events
%% would keep them firing for ever. Shaped as Python's own clear without
%% figures: the figures and suggestion it fired with.
%%
%% ```
%% ok = tether_telemetry:python_exited(self(), 42, {exit_status, 137}, #{<<"disk">> => {<<"slow">>, #{}, <<"look">>}}).
%% '''
-spec python_exited(pid(), integer() | undefined, term(), #{term() => {term(), map(), term()}}) -> ok.
python_exited(Worker, OsPid, Reason, Alerts) ->
    execute([tether, worker, exit], #{system_time => erlang:system_time()},
            #{worker => Worker, os_pid => OsPid, reason => Reason}),
    Message = iolist_to_binary(io_lib:format("cleared: Python (os pid ~p) exited", [OsPid])),
    maps:foreach(fun(Name, {_Fired, Figures, Suggestion}) ->
                         execute([tether, alert], #{system_time => erlang:system_time()},
                                 #{name => Name, state => cleared, message => Message, figures => Figures,
                                   suggestion => Suggestion, worker => Worker, os_pid => OsPid})
                 end, Alerts).

%% @doc Run one call between `[tether, call, start]' and `stop' or
%% `exception'. `Fun' returns the call's result and what the worker measured
%% (`queue_time', `bytes_in', `bytes_out', `route'; none of them when Python
%% never answered), and for a pool's call `worker', the member it went to.
%% Returns the call's result either way.
%%
%% ```
%% {ok, 3} = tether_telemetry:span(#{module => <<"m">>, function => <<"add">>, worker => self()},
%%                                 fun() -> {{ok, 3}, #{queue_time => 0, bytes_in => 80, bytes_out => 72,
%%                                                      route => inline}} end).
%% '''
-spec span(map(), fun(() -> {term(), map()})) -> term().
span(Meta, Fun) -> element(1, measured_span(Meta, Fun)).

%% @doc As {@link span/2}, returning what `Fun' returned, measurements and
%% all: `tether_worker:measure/5' sends the same events as a call.
%%
%% ```
%% {{ok, 3}, #{bytes_in := 80}} =
%%     tether_telemetry:measured_span(#{module => <<"m">>, function => <<"add">>, worker => self()},
%%                                    fun() -> {{ok, 3}, #{queue_time => 0, bytes_in => 80, bytes_out => 72,
%%                                                         route => inline}} end).
%% '''
-spec measured_span(map(), fun(() -> {term(), map()})) -> {term(), map()}.
measured_span(Meta, Fun) ->
    case erlang:function_exported(telemetry, execute, 3) of
        true -> traced(Meta, Fun);
        false -> Fun()
    end.

traced(Meta0, Fun) ->
    Meta = Meta0#{telemetry_span_context => make_ref()},
    Start = erlang:monotonic_time(),
    execute([tether, call, start], #{monotonic_time => Start, system_time => erlang:system_time()}, Meta),
    {Result, Stats} = Fun(),
    Stop = erlang:monotonic_time(),
    Duration = Stop - Start,
    Served = maps:merge(Meta, maps:with([worker], Stats)),
    case outcome(Result, Stats) of
        exception ->
            {error, Reason} = Result,
            execute([tether, call, exception], #{duration => Duration, monotonic_time => Stop},
                    Served#{kind => error, reason => Reason, stacktrace => []});
        Status ->
            Measurements = #{duration => Duration, monotonic_time => Stop,
                             queue_time => maps:get(queue_time, Stats, 0),
                             bytes_in => maps:get(bytes_in, Stats, 0),
                             bytes_out => maps:get(bytes_out, Stats, 0)},
            StopMeta = Served#{route => maps:get(route, Stats, inline), result => Status},
            execute([tether, call, stop], Measurements,
                    case Result of
                        {error, Reason} -> StopMeta#{error => Reason};
                        _ -> StopMeta
                    end)
    end,
    {Result, Stats}.

outcome({ok, _}, _) -> ok;
outcome({error, Reason}, Stats) ->
    case lists:member(Reason, ?EXCEPTIONS) orelse not is_map_key(route, Stats) of
        true -> exception;
        false -> error
    end.
