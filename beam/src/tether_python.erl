%% @doc The Python OS process behind a worker: find the interpreter, start
%% `python -m tether.worker' as a `{packet, 4}' port, signal it, and read what
%% it wrote to stderr.
%%
%% A port has no stderr of its own, and a Python that dies before it speaks
%% the protocol (a broken install, a crash at import) only says why there. So
%% the process starts through `/bin/sh', which points fd 2 at a file in the
%% worker's private directory and then `exec's Python: the OS pid stays
%% Python's, and {@link stderr/2} reads the file when the process exits.
-module(tether_python).

-include_lib("kernel/include/file.hrl").

-export([find/1, open/3, os_pid/1, signal/2, stderr/2]).

%% What a failed start quotes from stderr: the end, where the error is.
-define(STDERR_TAIL, 65536).

%% @doc The executable for `Python': an absolute or relative path as given, or
%% a name looked up in `PATH'. A path to something that is not an executable
%% file (a directory, a file without an execute bit) is `python_not_executable',
%% with what it is: a deployment that copied a venv without its modes meets it.
%%
%% ```
%% {ok, "/usr/bin/python3"} = tether_python:find("python3").
%% {error, {python_not_found, <<"/nope">>}} = tether_python:find("/nope").
%% {error, {python_not_executable, <<"/tmp">>, directory}} = tether_python:find("/tmp").
%% '''
-spec find(string()) -> {ok, string()} | {error, {python_not_found, binary()}}
                            | {error, {python_not_executable, binary(), atom()}}.
find(Python) ->
    Exe = case lists:member($/, Python) of
              true -> filename:absname(Python);  % a path, not a name to search
              false -> os:find_executable(Python)
          end,
    Name = unicode:characters_to_binary(Python),
    case Exe =/= false andalso file:read_file_info(Exe) of
        {ok, #file_info{type = regular, mode = Mode}} when Mode band 8#111 =/= 0 -> {ok, Exe};
        {ok, #file_info{type = regular}} -> {error, {python_not_executable, Name, not_executable}};
        {ok, #file_info{type = Type}} -> {error, {python_not_executable, Name, Type}};
        _ -> {error, {python_not_found, Name}}
    end.

%% @doc Start the worker program as a port owned by the caller. `Opts' are a
%% worker's checked options (tether_options); stderr goes to `StderrPath'.
%%
%% ```
%% {ok, Opts} = tether_options:worker(#{modules => [<<"math">>]}),
%% {ok, Exe} = tether_python:find("python3"),
%% {ok, Dir} = tether_private:make_dir(tether_private:default_parent()),
%% Port = tether_python:open(Exe, Opts, filename:join(Dir, "stderr")),
%% true = port_command(Port, tether_protocol:hello()),
%% receive {Port, {data, Ready}} -> {ok, {ready, #{modules := [<<"math">>]}}} = tether_protocol:decode(Ready) end,
%% true = port_close(Port),
%% ok = tether_private:remove_dir(Dir).
%% '''
-spec open(string(), map(), file:filename()) -> port().
open(Exe, Opts, StderrPath) ->
    #{modules := Mods, binaries := Bins, shm_threshold := Shm, max_message := Max, env := Env} = Opts,
    WorkerArgs = ["-m", "tether.worker"]
        ++ lists:append([["--module", binary_to_list(M)] || M <- Mods])
        ++ ["--binaries", atom_to_list(Bins), "--shm-threshold", integer_to_list(Shm),
            "--max-message", integer_to_list(Max),
            %% The worker's private directory: where `tether stats' finds its metrics.
            "--stats-dir", filename:dirname(StderrPath)]
        ++ case maps:find(log_level, Opts) of
               {ok, Level} -> ["--log-level", atom_to_list(Level)];
               error -> []
           end
        ++ case maps:find(spin_us, Opts) of
               {ok, Spin} -> ["--spin-us", integer_to_list(Spin)];
               error -> []
           end
        ++ case maps:find(pin, Opts) of
               {ok, {Role, Offset, Index, Spinners}} ->
                   ["--pin", lists:concat([Role, ":", Offset, ":", Index, ":", Spinners])];
               _ -> []
           end
        ++ case maps:find(sched_batch, Opts) of
               {ok, false} -> ["--no-sched-batch"];
               _ -> []
           end,
    %% $0 is the stderr file, "$@" the command: no quoting of user paths. The
    %% first redirection keeps the shell quiet if the file is gone already
    %% (the worker gave up on this start and removed its directory).
    Script = "exec 2>/dev/null 2>\"$0\" && exec \"$@\"",
    Cd = case maps:find(cd, Opts) of
             {ok, Dir} -> [{cd, Dir}];
             error -> []
         end,
    open_port({spawn_executable, "/bin/sh"},
              [{args, ["-c", Script, StderrPath, Exe | WorkerArgs]}, {packet, 4}, binary,
               exit_status, use_stdio, {env, Env} | Cd]).

%% @doc The OS pid of a port's process (Python's, since the shell `exec's it);
%% `undefined' once the port is closed.
%%
%% ```
%% Port = open_port({spawn_executable, "/bin/sleep"}, [{args, ["60"]}]),
%% OsPid = tether_python:os_pid(Port),
%% true = is_integer(OsPid),
%% true = port_close(Port),
%% undefined = tether_python:os_pid(Port),
%% ok = tether_python:signal(OsPid, kill).
%% '''
-spec os_pid(port()) -> non_neg_integer() | undefined.
os_pid(Port) ->
    case erlang:port_info(Port, os_pid) of
        {os_pid, Pid} -> Pid;
        undefined -> undefined
    end.

%% @doc Send `Signal' (`usr1' or `kill') to an OS process, without waiting.
%% OTP has no kill(2); a short-lived shell runs `kill'. A process that is
%% already gone is not an error.
%%
%% ```
%% Port = open_port({spawn_executable, "/bin/sleep"}, [{args, ["60"]}, exit_status]),
%% ok = tether_python:signal(tether_python:os_pid(Port), kill),
%% receive {Port, {exit_status, 137}} -> ok end,  % 128 + SIGKILL
%% ok = tether_python:signal(undefined, kill).
%% '''
-spec signal(non_neg_integer() | undefined, usr1 | kill) -> ok.
signal(undefined, _Signal) -> ok;
signal(OsPid, Signal) when is_integer(OsPid), OsPid > 1 ->
    Name = case Signal of usr1 -> "USR1"; kill -> "KILL" end,
    _ = open_port({spawn_executable, "/bin/sh"},
                  [{args, ["-c", "kill -s \"$0\" \"$1\" 2>/dev/null", Name, integer_to_list(OsPid)]},
                   stream, binary, in]),
    ok.

%% @doc What the process wrote to stderr from byte `From' on, at most the last
%% 64 KiB of it, and the offset to read from next time.
%%
%% ```
%% Path = "/tmp/tether-stderr-example",
%% ok = file:write_file(Path, <<"ModuleNotFoundError: my_handlers\n">>),
%% {<<"ModuleNotFoundError: my_handlers\n">>, 33} = tether_python:stderr(Path, 0),
%% {<<>>, 33} = tether_python:stderr(Path, 33).  % nothing new since
%% '''
-spec stderr(file:filename() | undefined, non_neg_integer()) -> {binary(), non_neg_integer()}.
stderr(undefined, From) -> {<<>>, From};
stderr(Path, From) ->
    case file:read_file_info(Path) of
        {ok, #file_info{size = Size}} when Size > From ->
            Start = max(From, Size - ?STDERR_TAIL),
            case file:open(Path, [read, raw, binary]) of
                {ok, Fd} ->
                    try file:pread(Fd, Start, Size - Start) of
                        {ok, Bin} -> {Bin, Start + byte_size(Bin)};
                        _ -> {<<>>, From}
                    after
                        file:close(Fd)
                    end;
                _ -> {<<>>, From}
            end;
        _ -> {<<>>, From}
    end.
