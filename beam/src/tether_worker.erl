%% @doc A Python worker driven from the BEAM: a port running `python -m tether.worker'.
%%
%% Calls are serialized (a worker is one Python process). Arguments and
%% results above `shm_threshold' bytes travel through shared memory; only a
%% small frame naming them crosses the pipe. If the worker dies, the caller
%% in flight gets `{error, {worker_exit, Status}}' and the next call starts a
%% fresh worker. Python exceptions come back as
%% `{error, {python, Type, Message, Traceback}}'.
-module(tether_worker).
-behaviour(gen_server).

-export([start_link/1, start/1, call/4, call/5, stop/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(SHM_THRESHOLD, 1048576).

%% @doc Options: `python' (executable, default "python3"), `modules' (list of
%% module names Python may call), `env' ([{Name, Value}]), `shm_threshold'
%% (bytes), `binaries' (bytes | str: how binaries arrive in Python).
start_link(Opts) -> gen_server:start_link(?MODULE, to_map(Opts), []).
start(Opts) -> gen_server:start(?MODULE, to_map(Opts), []).

call(W, Mod, Fun, Args) -> call(W, Mod, Fun, Args, 5000).
call(W, Mod, Fun, Args, Timeout) when is_list(Args) ->
    gen_server:call(W, {call, to_bin(Mod), to_bin(Fun), Args}, Timeout).

stop(W) -> gen_server:stop(W).

init(Opts) ->
    process_flag(trap_exit, true),
    {ok, #{opts => Opts, port => undefined, busy => undefined, queue => queue:new(), next => 1,
           args_file => undefined}}.

handle_call({call, M, F, A}, From, S = #{queue := Q}) ->
    {noreply, maybe_send(S#{queue := queue:in({From, M, F, A}, Q)})}.

handle_cast(_, S) -> {noreply, S}.

handle_info({Port, {data, Data}}, S = #{port := Port, busy := {Id, From}}) ->
    gen_server:reply(From, reply(Id, Data)),
    {noreply, maybe_send(S#{busy := undefined})};
handle_info({Port, {exit_status, Status}}, S = #{port := Port, busy := Busy}) ->
    case Busy of
        {_, From} -> gen_server:reply(From, {error, {worker_exit, Status}});
        undefined -> ok
    end,
    {noreply, maybe_send(S#{port := undefined, busy := undefined})};
handle_info({'EXIT', _Port, _Reason}, S) ->
    {noreply, S};
handle_info(_, S) ->
    {noreply, S}.

terminate(_, #{port := Port, args_file := Args}) ->
    catch port_close(Port),
    case Args of
        {Path, Fd} -> file:close(Fd), file:delete(Path);
        undefined -> ok
    end,
    ok.

%% ------------------------------------------------------------------ internals

maybe_send(S = #{busy := undefined, queue := Q}) ->
    case queue:out(Q) of
        {{value, Req}, Q1} -> send(Req, S#{queue := Q1});
        {empty, _} -> S
    end;
maybe_send(S) -> S.

send({From, M, F, A}, S0) ->
    S1 = #{port := Port, next := Id, opts := Opts} = ensure_port(S0),
    Threshold = maps:get(shm_threshold, Opts, ?SHM_THRESHOLD),
    {Frame, S2} = case erlang:external_size(A) > Threshold of
                      false -> {tether:encode({call, Id, M, F, A}), S1};
                      true ->
                          {Path, Fd, S3} = args_file(S1),
                          %% A private 0600 file written before the call is sent:
                          %% no payload checksum pass over large arguments.
                          ArgsFrame = tether:encode(A, #{checksum => none}),
                          ok = file:pwrite(Fd, 0, ArgsFrame),
                          Len = iolist_size(ArgsFrame),
                          {tether:encode({call, Id, M, F, {shm, Path, Len}}), S3}
                  end,
    true = port_command(Port, Frame),
    S2#{busy := {Id, From}, next := Id + 1}.

reply(Id, Data) ->
    case tether:decode(Data, #{safe => false}) of
        {ok, {reply, Id, {ok, Value}}} -> {ok, Value};
        {ok, {reply, Id, {ok_frame, Frame}}} -> tether:decode(Frame, #{safe => false});
        {ok, {reply, Id, {ok_shm, Path, Offset, Len}}} ->
            case tether:read_frame(Path, Offset, Len) of
                {ok, Frame} -> tether:decode(Frame, #{safe => false});
                Error -> Error
            end;
        {ok, {reply, Id, {error, Reason}}} -> {error, Reason};
        {ok, {reply, _, {error, Reason}}} -> {error, Reason};
        {ok, Other} -> {error, {unexpected_reply, Other}};
        Error -> Error
    end.

ensure_port(S = #{port := undefined, opts := Opts}) ->
    Python = case maps:get(python, Opts, "python3") of
                 P when is_binary(P) -> binary_to_list(P);
                 P -> P
             end,
    Exe = case {filename:pathtype(Python), lists:member($/, Python)} of
              {absolute, _} -> Python;
              {_, true} -> filename:absname(Python);  % a relative path, not a name to search
              {_, false} -> os:find_executable(Python)
          end,
    Exe =/= false orelse erlang:error({python_not_found, Python}),
    Mods = lists:append([["--module", to_list(M)] || M <- maps:get(modules, Opts, [])]),
    Bins = ["--binaries", atom_to_list(maps:get(binaries, Opts, bytes))],
    Shm = ["--shm-threshold", integer_to_list(maps:get(shm_threshold, Opts, ?SHM_THRESHOLD))],
    Env = [{to_list(K), to_list(V)} || {K, V} <- maps:get(env, Opts, [])],
    Port = open_port({spawn_executable, Exe},
                     [{args, ["-m", "tether.worker" | Mods ++ Bins ++ Shm]}, {packet, 4}, binary,
                      exit_status, use_stdio, {env, Env}]),
    S#{port := Port};
ensure_port(S) -> S.

%% One arguments file per worker, reused so its pages stay warm. Created
%% exclusive, then restricted to 0600 before any data is written.
args_file(S = #{args_file := {Path, Fd}}) -> {Path, Fd, S};
args_file(S) ->
    Rand = binary:encode_hex(crypto_bytes(8)),
    Path = iolist_to_binary(["/dev/shm/tether-", os:getpid(), "-", string:lowercase(Rand)]),
    {ok, Fd} = file:open(Path, [read, write, raw, binary, exclusive]),
    ok = file:change_mode(Path, 8#600),
    {Path, Fd, S#{args_file := {Path, Fd}}}.

crypto_bytes(N) -> << <<(rand:uniform(256) - 1)>> || _ <- lists:seq(1, N) >>.

to_map(Opts) when is_map(Opts) -> Opts;
to_map(Opts) when is_list(Opts) -> maps:from_list(Opts).

to_bin(B) when is_binary(B) -> B;
to_bin(A) when is_atom(A) -> atom_to_binary(A);
to_bin(L) when is_list(L) -> list_to_binary(L).

to_list(B) when is_binary(B) -> binary_to_list(B);
to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(L) when is_list(L) -> L.
