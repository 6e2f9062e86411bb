%% @doc Python's log records and stderr lines, forwarded to Erlang's `logger'
%% (which Elixir's `Logger' reads) at the matching level.
%%
%% Each event carries `domain => [tether, python]', `tether_worker' (the
%% worker's pid), `os_pid', `python_logger' (the Python logger's name, or
%% `<<"stderr">>') and, under `python', the metadata Python sent (a map).
-module(tether_pylog).

-export([forward/5, level/1]).

%% @doc Log one `{log, Level, Logger, Message, Meta}' message for a worker.
%%
%% ```
%% ok = tether_pylog:forward(warning, <<"app">>, <<"disk almost full">>, #{}, #{os_pid => 42}).
%% '''
-spec forward(term(), term(), term(), term(), map()) -> ok.
forward(Level, Logger, Message, Meta, WorkerMeta) ->
    Metadata = WorkerMeta#{domain => [tether, python],
                           tether_worker => self(),
                           python_logger => Logger,
                           python => case Meta of M when is_map(M) -> M; _ -> #{} end},
    logger:log(level(Level), "~ts", [text(Message)], Metadata).

%% @doc The logger level of a Python level; anything unexpected is `warning'.
%%
%% ```
%% critical = tether_pylog:level(critical).
%% warning = tether_pylog:level(<<"weird">>).
%% '''
-spec level(term()) -> logger:level().
level(L) when L =:= debug; L =:= info; L =:= notice; L =:= warning; L =:= error; L =:= critical;
              L =:= alert; L =:= emergency -> L;
level(_) -> warning.

text(B) when is_binary(B) -> B;
text(Other) -> io_lib:format("~0tp", [Other]).
