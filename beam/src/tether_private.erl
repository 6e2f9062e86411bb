%% @doc Private files for one worker: a 0700 directory, files inside it created
%% exclusively, every name drawn from `crypto:strong_rand_bytes/1'.
%%
%% Erlang cannot pass a mode to open(2) or mkdir(2): files come out with the
%% node's umask. So nothing sensitive is ever created in a shared directory.
%% The directory is made first (empty, so the moment before `chmod 0700' shows
%% nothing), restricted and checked; only then are files created inside it,
%% where no other user can reach them whatever their own mode says. They are
%% set to 0600 all the same, as docs/format.md §7 states.
%%
%% A name that already exists (left by someone else, or a collision) is never
%% reused: a new random name is drawn, up to a few times.
-module(tether_private).

-include_lib("kernel/include/file.hrl").

-export([default_parent/0, make_dir/1, make_dir/2, create_file/2, create_file/3,
         random_name/1, remove_dir/1, sweep/1]).
-export([restrict_dir/1]).  % @private: the check make_dir runs after mkdir, tested on its own

%% Names are 128 random bits: a clash is an attack or a leftover, and a few
%% fresh draws settle either.
-define(RANDOM_BYTES, 16).
-define(ATTEMPTS, 8).

-type name_fun() :: fun(() -> string() | binary()).
-export_type([name_fun/0]).

%% @doc Where private directories go: `/dev/shm' (memory, as Python's regions),
%% or the system temporary directory where there is no `/dev/shm'.
%%
%% ```
%% "/dev/shm" = tether_private:default_parent().
%% '''
-spec default_parent() -> file:filename().
default_parent() ->
    case filelib:is_dir("/dev/shm") of
        true -> "/dev/shm";
        false -> os:getenv("TMPDIR", "/tmp")
    end.

%% @doc A new private directory `tether-<os pid>-<32 hex digits>' in `Parent'.
%%
%% ```
%% {ok, Dir} = tether_private:make_dir("/dev/shm").
%% '''
-spec make_dir(file:filename_all()) -> {ok, file:filename()} | {error, term()}.
make_dir(Parent) ->
    make_dir(Parent, fun() -> random_name("tether-" ++ os:getpid() ++ "-") end).

%% @doc As {@link make_dir/1}, with the names drawn by `NameFun' (tests use it
%% to present a name that already exists).
-spec make_dir(file:filename_all(), name_fun()) -> {ok, file:filename()} | {error, term()}.
make_dir(Parent, NameFun) ->
    attempt(?ATTEMPTS, fun() ->
        Dir = filename:join(Parent, NameFun()),
        case file:make_dir(Dir) of
            ok -> restrict_dir(Dir);
            {error, eexist} -> retry;
            {error, Reason} -> {error, {private_dir, Dir, Reason}}
        end
    end).

%% The directory must be ours and closed to everyone else before anything
%% goes in: chmod, then check what is actually there (not a symlink, 0700,
%% and empty). mkdir takes the umask's mode: under a permissive one (000, or
%% 002 with a shared group) another user could put a link in it before the
%% chmod, for a later write to follow; such a directory is dropped, and a
%% fresh name drawn.
restrict_dir(Dir) ->
    case file:change_mode(Dir, 8#700) of
        ok ->
            case file:read_link_info(Dir) of
                {ok, #file_info{type = directory, mode = Mode}} when Mode band 8#777 =:= 8#700 ->
                    case file:list_dir(Dir) of
                        {ok, []} -> {ok, Dir};
                        _ -> _ = file:del_dir_r(Dir), retry  % del_dir_r removes links, not their targets
                    end;
                {ok, Info} ->
                    {error, {private_dir, Dir, {unexpected, Info#file_info.type, Info#file_info.mode}}};
                {error, Reason} ->
                    {error, {private_dir, Dir, Reason}}
            end;
        {error, Reason} ->
            _ = file:del_dir(Dir),
            {error, {private_dir, Dir, Reason}}
    end.

%% @doc A new file `<Prefix><32 hex digits>' in the private directory `Dir',
%% created exclusively and opened raw for reading and writing.
%%
%% ```
%% {ok, Path, Fd} = tether_private:create_file(Dir, "tether-args-").
%% '''
-spec create_file(file:filename_all(), string()) ->
          {ok, file:filename(), file:fd()} | {error, term()}.
create_file(Dir, Prefix) ->
    create_file(Dir, Prefix, fun() -> random_name(Prefix) end).

%% @doc As {@link create_file/2}, with the names drawn by `NameFun'.
-spec create_file(file:filename_all(), string(), name_fun()) ->
          {ok, file:filename(), file:fd()} | {error, term()}.
create_file(Dir, _Prefix, NameFun) ->
    attempt(?ATTEMPTS, fun() ->
        Path = filename:join(Dir, NameFun()),
        case file:open(Path, [read, write, raw, binary, exclusive]) of
            {ok, Fd} ->
                case file:change_mode(Path, 8#600) of
                    ok -> {ok, Path, Fd};
                    {error, Reason} ->
                        _ = file:close(Fd),
                        _ = file:delete(Path),
                        {error, {private_file, Path, Reason}}
                end;
            {error, eexist} -> retry;
            {error, Reason} -> {error, {private_file, Path, Reason}}
        end
    end).

%% @doc `Prefix' followed by 32 lowercase hex digits from a strong random source.
%%
%% ```
%% "tether-args-" ++ Hex = tether_private:random_name("tether-args-"), 32 = length(Hex).
%% '''
-spec random_name(string()) -> string().
random_name(Prefix) ->
    Prefix ++ string:lowercase(binary_to_list(binary:encode_hex(crypto:strong_rand_bytes(?RANDOM_BYTES)))).

%% @doc Remove a private directory and everything in it; a missing one is fine.
%%
%% ```
%% {ok, Dir} = tether_private:make_dir(tether_private:default_parent()),
%% ok = tether_private:remove_dir(Dir),
%% false = filelib:is_dir(Dir),
%% ok = tether_private:remove_dir(Dir).
%% '''
-spec remove_dir(file:filename_all() | undefined) -> ok.
remove_dir(undefined) -> ok;
remove_dir(Dir) ->
    _ = file:del_dir_r(Dir),
    ok.

%% @doc Remove the private directories in `Parent' whose node is gone: a
%% worker that was killed, or a node that died, never removed its own. Only
%% directories named `tether-<os pid>-<32 hex digits>' whose OS process no
%% longer exists are touched (Python's regions are files, not directories).
%% Returns the directories removed.
%%
%% ```
%% Removed = tether_private:sweep("/dev/shm").
%% '''
-spec sweep(file:filename_all()) -> [file:filename()].
sweep(Parent) ->
    case file:list_dir(Parent) of
        {ok, Names} ->
            [Dir || Name <- Names, {ok, Pid} <- [owner(Name)], not filelib:is_dir("/proc/" ++ Pid),
                    Dir <- [filename:join(Parent, Name)], is_private_dir(Dir),
                    file:del_dir_r(Dir) =:= ok];
        {error, _} -> []
    end.

owner(Name) ->
    case re:run(Name, "^tether-([0-9]+)-[0-9a-f]{32}$", [{capture, all_but_first, list}, unicode]) of
        {match, [Pid]} -> {ok, Pid};
        nomatch -> none
    end.

is_private_dir(Dir) ->
    case file:read_link_info(Dir) of
        {ok, #file_info{type = directory, mode = Mode}} -> Mode band 8#777 =:= 8#700;
        _ -> false
    end.

attempt(0, _Fun) -> {error, {private_name_exhausted, ?ATTEMPTS}};
attempt(N, Fun) ->
    case Fun() of
        retry -> attempt(N - 1, Fun);
        Result -> Result
    end.
