%% @doc Starting a gen_server that fails fast without taking its caller down.
%%
%% A gen_server whose `init/1' returns `{stop, Reason}' makes `start_link'
%% return `{error, Reason}', but also exits with `Reason', and that signal
%% kills a linked caller that does not trap exits. A worker whose Python
%% cannot start is an expected outcome, reported by `start_link', not a crash:
%% so the process acknowledges `{error, Reason}' and exits `normal'.
%% On success it registers its name and enters the gen_server loop.
%%
%% A module started this way exports `init_server/1' (the callback below)
%% where a plain gen_server has `init/1'.
-module(tether_proc).

-export([start/4, init_it/4]).

-type name() :: {local, atom()} | {global, term()} | {via, module(), term()} | undefined.
-export_type([name/0]).

-callback init_server(Args :: term()) -> {ok, State :: term()} | {error, Reason :: term()}.

%% @doc Start `Module' (a gen_server with an `init_server/1' callback),
%% linked to the caller or not. `Module:init_server/1' may take as long as it
%% needs: it bounds its own wait.
%%
%% ```
%% {ok, Checked} = tether_options:worker(#{modules => [<<"math">>]}),
%% {ok, Exe} = tether_python:find("python3"),
%% {ok, W} = tether_proc:start(nolink, tether_worker, undefined, Checked#{exe => Exe}),
%% ok = tether_worker:stop(W).
%% '''
-spec start(link | nolink, module(), name(), term()) -> {ok, pid()} | {error, term()}.
start(link, Module, Name, Args) -> proc_lib:start_link(?MODULE, init_it, [self(), Module, Name, Args], infinity);
start(nolink, Module, Name, Args) -> proc_lib:start(?MODULE, init_it, [self(), Module, Name, Args], infinity).

%% @private proc_lib entry point.
-spec init_it(pid(), module(), name(), term()) -> no_return().
init_it(_Starter, Module, Name, Args) ->
    case register_name(Name) of
        ok ->
            case Module:init_server(Args) of
                {ok, State} ->
                    proc_lib:init_ack({ok, self()}),
                    case Name of
                        undefined -> gen_server:enter_loop(Module, [], State);
                        _ -> gen_server:enter_loop(Module, [], State, Name)
                    end;
                {error, Reason} ->
                    unregister_name(Name),
                    proc_lib:init_ack({error, Reason}),
                    exit(normal)
            end;
        {error, Reason} ->
            proc_lib:init_ack({error, Reason}),
            exit(normal)
    end.

register_name(undefined) -> ok;
register_name({local, Name} = N) ->
    try register(Name, self()) of
        true -> ok
    catch error:badarg -> {error, {already_started, where(N)}}
    end;
register_name({global, Name} = N) ->
    case global:register_name(Name, self()) of
        yes -> ok;
        no -> {error, {already_started, where(N)}}
    end;
register_name({via, Module, Name} = N) ->
    case Module:register_name(Name, self()) of
        yes -> ok;
        no -> {error, {already_started, where(N)}}
    end.

unregister_name(undefined) -> ok;
unregister_name({local, Name}) -> catch unregister(Name), ok;
unregister_name({global, Name}) -> global:unregister_name(Name), ok;
unregister_name({via, Module, Name}) -> catch Module:unregister_name(Name), ok.

where({local, Name}) -> whereis(Name);
where({global, Name}) -> global:whereis_name(Name);
where({via, Module, Name}) -> Module:whereis_name(Name).
