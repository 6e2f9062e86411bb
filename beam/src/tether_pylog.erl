%% @doc Python's log records and stderr lines, forwarded to Erlang's `logger'
%% (which Elixir's `Logger' reads) at the matching level.
%%
%% Each event carries `domain => [tether, python]', `tether_worker' (the
%% worker's pid), `os_pid', `python_logger' (the Python logger's name, or
%% `<<"stderr">>'), under `python' the record's source Python sent (a map),
%% and under `python_extra' what the record's `extra=' added (a map with
%% binary keys), when it added anything.
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
                           python_logger => Logger},
    logger:log(level(Level), "~ts", [text(Message)], with_python(Meta, Metadata)).

%% Python sends the fields of extra= under a binary key, so that the decode
%% makes no atom: they become their own metadata entry.
with_python(#{<<"extra">> := Extra} = Meta, Metadata) when is_map(Extra) ->
    Metadata#{python => maps:remove(<<"extra">>, Meta), python_extra => Extra};
with_python(Meta, Metadata) when is_map(Meta) -> Metadata#{python => Meta};
with_python(_, Metadata) -> Metadata#{python => #{}}.

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
