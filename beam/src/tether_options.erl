%% @doc The options of a worker, a pool and a call: checked once, at the
%% boundary, with defaults filled in.
%%
%% Every error is `{bad_option, Key, Message}': the key, and a message that
%% says what was expected and what came (for an unknown key, the valid keys).
%% Values in messages are written as Erlang writes them (`~p'); {@link
%% explain/3} runs a check again with them written another way, which the
%% Elixir wrappers use to word their errors in Elixir (`"x"', not `<<"x">>').
-module(tether_options).

-export([worker/1, member/1, pool/1, cpus/0, allowed_cpus/0, schedulers_bound/0, call/2, target/3, encode/1, decode/1,
         stream_reader/1, stream_writer/1, versions/2, worker_keys/0, pool_keys/0, explain/3, child_id/2]).

-include("../include/tether.hrl").

-define(DEFAULT_SHM_THRESHOLD, 1048576).
-define(DEFAULT_START_TIMEOUT, 60000).
-define(DEFAULT_CANCEL_GRACE, 1000).
%% A warm arguments file saves a large call its page faults; one call a
%% minute is not a stream of them, and a minute is long to hold its memory.
-define(DEFAULT_SHM_KEEP, 30000).
-define(DEFAULT_CALL_TIMEOUT, 5000).
-define(DEFAULT_MAX_QUEUE, 100).
%% The worker's own default (`--max-message'): larger data goes through shared memory.
-define(DEFAULT_MAX_MESSAGE, 268435456).
%% What a {packet, 4} length prefix can say.
-define(PACKET_MAX, 4294967295).
%% The longest spin the worker accepts (Python's SPIN_US_MAX, `--spin-us').
-define(SPIN_US_MAX, 10000).

-type error() :: {error, {bad_option, atom() | term(), binary()}}.
%% What explain/3 checks: the options of a worker, a pool, a call, tether:encode/2,
%% tether:decode/2 or a stream, a call's `{Module, Function, Args}' (`target'), or
%% type versions given as option `Key' ({@link versions/2}).
-type kind() :: worker | pool | {call, worker | pool} | encode | decode | stream_reader | stream_writer | target
              | {versions, atom()}.
%% Writes a value in a message: the value, and how deep to go (`infinity': all of it).
-type show() :: fun((term(), pos_integer() | infinity) -> iodata()).
-export_type([error/0, kind/0, show/0]).

%% {Key, Check, Default}: `required' marks a key without a default, `none' one
%% that stays absent unless given.
worker_spec() ->
    [{python, fun string/1, "python3"},
     {modules, fun modules/1, required},
     {env, fun env/1, []},
     {cd, fun directory/1, none},
     {shm_threshold, fun non_neg_integer/1, ?DEFAULT_SHM_THRESHOLD},
     {max_message, fun message_size/1, ?DEFAULT_MAX_MESSAGE},
     {shm_dir, fun directory/1, none},
     {binaries, one_of([bytes, str]), bytes},
     {log_level, one_of([debug, info, warning, error, critical]), none},
     %% Absent: the worker's own default (Python's SPIN_US), the one place it is set.
     {spin_us, fun spin_us/1, none},
     {start_timeout, fun timeout_ms/1, ?DEFAULT_START_TIMEOUT},
     {cancel_grace, fun grace_ms/1, ?DEFAULT_CANCEL_GRACE},
     {shm_keep, fun timeout_ms/1, ?DEFAULT_SHM_KEEP},
     {name, fun name/1, none}].

%% Set by tether_pool for its members, not by users.
member_spec() ->
    [{notify, fun pid/1, none},
     {async_start, fun boolean/1, false},
     {pin, fun pin_role/1, none},
     {sched_batch, fun boolean/1, true},
     {load, fun atomics_ref/1, none}].

pool_spec() ->
    [{size, fun pos_integer/1, cpus()},
     {max_queue, fun non_neg_integer/1, ?DEFAULT_MAX_QUEUE},
     %% Polling members hold a core each while they wait: leave one to the BEAM.
     {spinners, fun non_neg_integer/1, max(1, cpus() - 1)},
     %% Polling members on CPUs of their own, and the others off them.
     {pin, fun boolean/1, true},
     %% A pinned sleeping member under SCHED_BATCH while its CPU has room (tether._sched).
     {sched_batch, fun boolean/1, true}]
    ++ [S || S = {K, _, _} <- worker_spec(), K =/= name] ++ [{name, fun name/1, none}].

%% @doc The CPUs this node may run on: what a pool's defaults count. Members
%% are OS processes, so an emulator started with fewer schedulers (`+S 1')
%% still gets a member per CPU. A cgroup CPU quota (docker `--cpus=2')
%% caps it, rounded up. The schedulers online stand in where the OS does not tell.
-spec cpus() -> pos_integer().
cpus() ->
    Cpus = allowed_cpus(),
    case erlang:system_info(cpu_quota) of
        Quota when is_integer(Quota), Quota > 0 -> min(Cpus, Quota);
        _ -> Cpus
    end.

%% @doc The CPUs this node may run on, with no quota applied: as many as a
%% worker's Python has in its affinity list (it inherits the node's), which
%% a pool's pinning offsets index (tether.worker.pinned_cpus).
-spec allowed_cpus() -> pos_integer().
allowed_cpus() ->
    cpus([logical_processors_available, logical_processors, schedulers_online]).

%% @doc Whether the emulator's schedulers are bound to CPUs (`+sbt db', say):
%% pools then place their polling members around them (tether_pool).
-spec schedulers_bound() -> boolean().
schedulers_bound() ->
    element(1, erlang:system_info(scheduler_bindings)) =/= unbound.

cpus([Item | Rest]) ->
    case erlang:system_info(Item) of
        N when is_integer(N), N > 0 -> N;
        _ -> cpus(Rest)
    end.

call_spec(worker) ->
    [{timeout, fun timeout_ms/1, ?DEFAULT_CALL_TIMEOUT},
     {tables, one_of([arrow, rows, columns]), arrow}];
call_spec(pool) ->
    call_spec(worker) ++ [{checkout_timeout, fun timeout_ms/1, none}].

%% @doc The option keys a worker takes (for error messages and docs).
%%
%% ```
%% true = lists:member(shm_threshold, tether_options:worker_keys()).
%% '''
-spec worker_keys() -> [atom()].
worker_keys() -> [K || {K, _, _} <- worker_spec()].

%% @doc The option keys a pool takes: `size', `max_queue', `spinners', `pin',
%% `sched_batch', then a worker's.
%%
%% ```
%% [size, max_queue | _] = tether_options:pool_keys().
%% '''
-spec pool_keys() -> [atom()].
pool_keys() -> [K || {K, _, _} <- pool_spec()].

%% @doc Check a worker's options (a map or a proplist) and fill in defaults.
%%
%% ```
%% {ok, #{python := "python3", shm_threshold := 1048576}} =
%%     tether_options:worker(#{modules => [<<"m">>]}).
%% {error, {bad_option, pyhton, _}} = tether_options:worker(#{pyhton => "x", modules => [m]}).
%% '''
-spec worker(map() | list()) -> {ok, map()} | error().
worker(Opts) -> check(Opts, worker_spec()).

%% @doc Check a pool member's options: a worker's, plus what its pool sets
%% for it (`notify', `async_start', `pin', `sched_batch', `load'), which a
%% worker started on its own refuses.
%%
%% ```
%% {ok, #{async_start := true}} = tether_options:member(#{modules => [<<"m">>], async_start => true}).
%% {error, {bad_option, async_start, _}} = tether_options:worker(#{modules => [<<"m">>], async_start => true}).
%% '''
-spec member(map() | list()) -> {ok, map()} | error().
member(Opts) -> check(Opts, worker_spec() ++ member_spec()).

%% @doc Check a pool's options: a worker's options (less `name', which names
%% the pool) plus `size', `max_queue', `spinners', `pin' and `sched_batch'.
%%
%% ```
%% {ok, #{size := 2, max_queue := 100}} = tether_options:pool(#{modules => [<<"m">>], size => 2}),
%% {error, {bad_option, size, <<"expected a positive integer, got 0">>}} =
%%     tether_options:pool(#{modules => [<<"m">>], size => 0}).
%% '''
-spec pool(map() | list()) -> {ok, map()} | error().
pool(Opts) -> check(Opts, pool_spec()).

%% @doc Check a call's options. A bare timeout stands for `#{timeout => T}'.
%%
%% ```
%% {ok, #{timeout := 100, tables := arrow}} = tether_options:call(worker, 100).
%% '''
-spec call(worker | pool, map() | list() | timeout()) -> {ok, map()} | error().
%% The common cases skip the general check: it runs on every call.
call(_Kind, Timeout) when is_integer(Timeout), Timeout >= 0; Timeout =:= infinity ->
    {ok, #{timeout => Timeout, tables => arrow}};
call(_Kind, Empty) when Empty =:= []; Empty =:= #{} ->
    {ok, #{timeout => ?DEFAULT_CALL_TIMEOUT, tables => arrow}};
call(Kind, Opts) -> check(Opts, call_spec(Kind)).

%% @doc A call's module, function and arguments: the names as binaries, or
%% `{error, {bad_argument, Which, Message}}' (`Which': module, function or args).
%%
%% ```
%% {ok, <<"math">>, <<"sqrt">>} = tether_options:target(math, "sqrt", [2.0]),
%% {error, {bad_argument, function, _}} = tether_options:target(<<"math">>, 5, []).
%% '''
-spec target(term(), term(), term()) -> {ok, binary(), binary()} | {error, {bad_argument, atom(), binary()}}.
target(Mod, Fun, Args) -> target(Mod, Fun, Args, fun erlang_show/2).

target(Mod, Fun, Args, Show) ->
    case {module_name(Mod), module_name(Fun), is_list(Args)} of
        {error, _, _} -> bad_argument(module, "a module name (a non-empty binary, atom or string)", Mod, Show);
        {_, error, _} -> bad_argument(function, "a function name (a non-empty binary, atom or string)", Fun, Show);
        {_, _, false} -> bad_argument(args, "the call's arguments as a list", Args, Show);
        {M, F, true} -> {ok, M, F}
    end.

bad_argument(Which, Expected, Got, Show) ->
    Message = io_lib:format("expected ~ts, got ~ts", [Expected, Show(Got, infinity)]),
    {error, {bad_argument, Which, unicode:characters_to_binary(Message)}}.

%% @doc The check of `Kind' run again on `Input', its messages writing values
%% with `Show': the same answer as the check itself, worded another way. The
%% Elixir wrappers call it after an error, with Elixir's `inspect/2', so that
%% their `ArgumentError's read `got "x"' where Erlang's read `got <<"x">>'.
%%
%% ```
%% Show = fun(T, _Depth) -> io_lib:format("~w", [T]) end,
%% {error, {bad_option, python, <<"expected a non-empty string, got <<>>">>}} =
%%     tether_options:explain(worker, [{python, <<>>}, {modules, [m]}], Show),
%% {error, {bad_argument, args, <<"expected the call's arguments as a list, got x">>}} =
%%     tether_options:explain(target, {m, f, x}, Show).
%% '''
-spec explain(kind(), term(), show()) -> {ok, map()} | {ok, binary(), binary()} | error()
          | {error, {bad_argument, atom(), binary()}}.
explain(worker, Opts, Show) -> check(Opts, worker_spec(), Show);
explain(pool, Opts, Show) -> check(Opts, pool_spec(), Show);
explain({call, Kind}, Opts, Show) when Kind =:= worker; Kind =:= pool ->
    case call(Kind, Opts) of
        {ok, _} = Ok -> Ok;
        _ -> check(Opts, call_spec(Kind), Show)
    end;
explain(encode, Opts, Show) -> check(Opts, encode_spec(), Show);
explain(decode, Opts, Show) -> check(Opts, decode_spec(), Show);
explain(stream_reader, Opts, Show) -> check(Opts, stream_reader_spec(), Show);
explain(stream_writer, Opts, Show) -> check(Opts, stream_writer_spec(), Show);
explain(target, {Mod, Fun, Args}, Show) -> target(Mod, Fun, Args, Show);
explain({versions, Key}, Versions, Show) -> check(#{Key => Versions}, [{Key, fun type_versions/1, none}], Show).

%% @doc Check the options of tether:encode/2 (and tether:tensor/4): the
%% options as given, or `{error, {bad_option, Key, Message}}'.
%%
%% ```
%% {ok, #{compression := gzip}} = tether_options:encode(#{compression => gzip}),
%% {error, {bad_option, compresion, _}} = tether_options:encode([{compresion, gzip}]).
%% '''
-spec encode(map() | list()) -> {ok, map()} | error().
encode(Opts) when Opts =:= #{}; Opts =:= [] -> {ok, #{}};
encode(Opts) -> check(Opts, encode_spec()).

%% @doc Check the options of tether:decode/2, as {@link encode/1} does.
%%
%% ```
%% {ok, #{safe := false}} = tether_options:decode([{safe, false}]).
%% '''
-spec decode(map() | list()) -> {ok, map()} | error().
decode(Opts) when Opts =:= #{}; Opts =:= [] -> {ok, #{}};
decode(Opts) -> check(Opts, decode_spec()).

%% @doc Check the options of tether_stream:open/2 and verify/2 (`max_frame',
%% `resume', and `safe' and `max_uncompressed_size' as for decode/1). Nothing
%% is filled in; `resume' is checked by tether_stream, which owns checkpoints.
%%
%% ```
%% {ok, #{max_frame := infinity}} = tether_options:stream_reader([{max_frame, infinity}]),
%% {error, {bad_option, max_fram, _}} = tether_options:stream_reader(#{max_fram => 10}).
%% '''
-spec stream_reader(map() | list()) -> {ok, map()} | error().
stream_reader(Opts) -> check(Opts, stream_reader_spec()).

%% @doc Check the options of tether_stream:open_writer/2: `compression',
%% `level', `chunk_size', `metadata', `resume' and `append'.
%%
%% ```
%% {ok, #{compression := gzip}} = tether_options:stream_writer(#{compression => gzip}),
%% {error, {bad_option, compression, _}} = tether_options:stream_writer(#{compression => lz4}).
%% '''
-spec stream_writer(map() | list()) -> {ok, map()} | error().
stream_writer(Opts) -> check(Opts, stream_writer_spec()).

%% @doc Check a map of type names to the versions a reader reads, given as
%% option `Key' (`Tether.Type''s `versions', tether:encode/2's
%% `type_versions'): names are binaries, versions integers. An integer
%% below 1 passes, and is the `type_downgrade' error of its type when one
%% is written (its message says versions start at 1).
%%
%% ```
%% {ok, #{versions := #{<<"acme.Point">> := 2}}} = tether_options:versions(versions, #{<<"acme.Point">> => 2}),
%% {error, {bad_option, versions, _}} = tether_options:versions(versions, #{'acme.Point' => 2}).
%% '''
-spec versions(atom(), term()) -> {ok, map()} | error().
versions(Key, Versions) -> check(#{Key => Versions}, [{Key, fun type_versions/1, none}]).

%% Each check answers {ok, Value} unchanged, and nothing is filled in: the
%% frame builder, the decoder and the stream apply their own defaults.
encode_spec() ->
    [{format, one_of([etf, raw]), none},
     {compressed, fun boolean/1, none},
     {compression, one_of([none, gzip]), none},
     {level, fun gzip_level/1, none},
     {checksum, one_of([crc32, none]), none},
     {metadata, fun metadata/1, none},
     {type_versions, fun type_versions/1, none},
     {float_atoms, fun boolean/1, none},
     {parent, fun parent/1, none},
     {step, fun step/1, none}].

decode_spec() ->
    [{verify, fun boolean/1, none},
     {safe, fun boolean/1, none},
     {max_uncompressed_size, fun non_neg_integer/1, none}].

stream_reader_spec() ->
    [{max_frame, fun max_frame/1, none},
     {resume, fun present/1, none},
     {safe, fun boolean/1, none},
     {max_uncompressed_size, fun non_neg_integer/1, none}].

stream_writer_spec() ->
    %% The BEAM compresses with zlib only: lz4 and zstd have no codec in OTP.
    [{compression, one_of([none, gzip]), none},
     {level, fun gzip_level/1, none},
     {chunk_size, fun pos_integer/1, none},
     {metadata, fun metadata/1, none},
     {resume, fun present/1, none},
     {append, fun boolean/1, none},
     {type_versions, fun type_versions/1, none},
     {float_atoms, fun boolean/1, none}].

%% ------------------------------------------------------------------ checking

check(Opts, Spec) -> check(Opts, Spec, fun erlang_show/2).

check(Opts, Spec, Show) when is_list(Opts) ->
    case proplist(Opts, Show) of
        {ok, Map} -> check(Map, Spec, Show);
        Error -> Error
    end;
check(Opts, Spec, Show) when is_map(Opts) ->
    Keys = [K || {K, _, _} <- Spec],
    case [K || K <- maps:keys(Opts), not lists:member(K, Keys)] of
        [Unknown | _] ->
            unknown(Unknown, Spec);
        [] -> fill(Spec, Opts, #{}, Show)
    end;
check(Opts, _Spec, Show) ->
    bad(options, "expected a keyword list or a map, got ~ts", [Show(Opts, infinity)]).

%% A pool's own option given to a worker says where it belongs; otherwise the
%% valid options are listed, less those only a pool sets for its members.
unknown(Key, Spec) ->
    case Spec =:= worker_spec() andalso lists:keymember(Key, 1, pool_spec()) of
        true ->
            bad(Key, "a Tether.Pool option (tether_pool), not a worker's: start a pool to use it", []);
        false ->
            Public = [atom_to_list(K) || {K, _, _} <- Spec,
                                         lists:keymember(K, 1, pool_spec()) orelse not lists:keymember(K, 1, member_spec())],
            bad(Key, "unknown option; valid options are: ~ts", [lists:join(", ", Public)])
    end.

proplist(List, Show) when length(List) >= 0 ->  % length/1 fails the guard of an improper list
    try maps:from_list([pair(E) || E <- List]) of
        Map -> {ok, Map}
    catch throw:{bad_entry, E} -> bad(options, "expected {Key, Value} pairs, got ~ts", [Show(E, infinity)])
    end;
proplist(List, Show) ->
    bad(options, "expected a proper list of {Key, Value} pairs, got ~ts", [Show(List, infinity)]).

pair({K, V}) -> {K, V};
pair(E) -> throw({bad_entry, E}).

fill([], _Opts, Acc, _Show) -> {ok, Acc};
fill([{Key, Check, Default} | Rest], Opts, Acc, Show) ->
    case maps:find(Key, Opts) of
        {ok, Value} ->
            case Check(Value) of
                {ok, Clean} -> fill(Rest, Opts, Acc#{Key => Clean}, Show);
                {expected, What} -> bad(Key, "expected ~ts, got ~ts", [What, Show(Value, infinity)]);
                %% Why names the part (Value may be large), written when the values in it are.
                {refused, Why} -> bad(Key, "~ts", [Why(Show)])
            end;
        error when Default =:= required -> bad(Key, "is required", []);
        error when Default =:= none -> fill(Rest, Opts, Acc, Show);
        error -> fill(Rest, Opts, Acc#{Key => Default}, Show)
    end.

%% How Erlang writes a value in a message: `~p' on one line, `~P' when bounded.
erlang_show(Term, infinity) -> io_lib:format("~0tp", [Term]);
erlang_show(Term, Depth) -> io_lib:format("~0tP", [Term, Depth]).

bad(Key, Format, Args) ->
    {error, {bad_option, Key, unicode:characters_to_binary(io_lib:format(Format, Args))}}.

%% ------------------------------------------------------------------ checks

string(S) when is_binary(S), byte_size(S) > 0 -> {ok, unicode:characters_to_list(S)};
string(S) when is_list(S), S =/= [] ->
    case io_lib:char_list(S) of
        true -> {ok, S};
        false -> {expected, "a non-empty string"}
    end;
string(_) -> {expected, "a non-empty string"}.

%% A missing directory would fail later as a bare `exited_before_ready' (cd)
%% or `private_dir' (shm_dir); say so here, where the option is named.
directory(D) ->
    case string(D) of
        {ok, S} ->
            case filelib:is_dir(S) of
                true -> {ok, S};
                false -> {expected, "an existing directory"}
            end;
        Other -> Other
    end.

modules([_ | _] = Mods) ->
    Clean = [module_name(M) || M <- Mods],
    case lists:member(error, Clean) of
        false -> {ok, Clean};
        true -> {expected, "a non-empty list of Python module names (strings)"}
    end;
modules(_) -> {expected, "a non-empty list of Python module names (strings)"}.

module_name(M) when is_atom(M) -> atom_to_binary(M);
module_name(M) when is_binary(M), byte_size(M) > 0 -> M;
module_name(M) when is_list(M) ->
    %% Chardata, as the specs say (iodata() | atom()): [<<"pkg">>, ".mod"] names pkg.mod.
    try unicode:characters_to_binary(M) of
        B when is_binary(B), byte_size(B) > 0 -> B;
        _ -> error
    catch error:badarg -> error
    end;
module_name(_) -> error.

env(Env) when is_map(Env) -> env(maps:to_list(Env));
env(Env) when is_list(Env) ->
    Clean = [{env_str(K), env_value(V)} || {K, V} <- [E || E <- Env, is_tuple(E), tuple_size(E) =:= 2]],
    case length(Clean) =:= length(Env) andalso
         lists:all(fun({K, V}) -> K =/= error andalso V =/= error end, Clean) of
        true -> {ok, Clean};
        false -> {expected, "a list of {Name, Value} string pairs (a nil value, e.g. System.get_env/1 "
                            "of an unset variable, is refused: leave the variable out)"}
    end;
env(_) -> {expected, "a list of {Name, Value} string pairs"}.

env_str(S) when is_binary(S) -> unicode:characters_to_list(S);
env_str(A) when is_atom(A) -> atom_to_list(A);
env_str(S) when is_list(S) ->
    case io_lib:char_list(S) of
        true -> S;
        false -> error
    end;
env_str(_) -> error.

%% Names may be atoms (a keyword list); values must be strings, so that nil
%% (an unset variable in Elixir) never becomes the text "nil".
env_value(V) when is_atom(V) -> error;
env_value(V) -> env_str(V).

non_neg_integer(N) when is_integer(N), N >= 0 -> {ok, N};
non_neg_integer(_) -> {expected, "a non-negative integer"}.

message_size(N) when is_integer(N), N >= 64, N =< ?PACKET_MAX -> {ok, N};
message_size(_) -> {expected, "an integer from 64 to 4294967295 (bytes)"}.

spin_us(N) when is_integer(N), N >= 0, N =< ?SPIN_US_MAX -> {ok, N};
spin_us(_) -> {expected, "an integer from 0 to 10000 (microseconds; 0: never spin)"}.

pos_integer(N) when is_integer(N), N > 0 -> {ok, N};
pos_integer(_) -> {expected, "a positive integer"}.

%% The longest wait Erlang's timers and `receive ... after' take: longer ones
%% fail where they are used (a call's wait, a timer), not here.
-define(MAX_MS, 4294967295).

timeout_ms(infinity) -> {ok, infinity};
timeout_ms(N) when is_integer(N), N >= 0, N =< ?MAX_MS -> {ok, N};
timeout_ms(_) -> {expected, "a non-negative integer (milliseconds) up to 4294967295 (49 days), or infinity"}.

grace_ms(N) when is_integer(N), N >= 0, N =< ?MAX_MS -> {ok, N};
grace_ms(_) -> {expected, "an integer from 0 to 4294967295 (milliseconds)"}.

gzip_level(N) when is_integer(N), N >= 0, N =< 9 -> {ok, N};
gzip_level(_) -> {expected, "a gzip level, 0..9"}.

%% Unchecked, a version "2" or 2.0 was written as the newest (term order puts
%% any binary above 3), and an atom name matched no type and was ignored.
type_versions(M) when is_map(M) ->
    case [{K, V} || {K, V} <- maps:to_list(M), not (is_binary(K) andalso is_integer(V))] of
        [] -> {ok, M};
        [{K, V} | _] -> {refused, fun(Show) -> bad_version(K, V, Show) end}
    end;
type_versions(_) -> {expected, "a map of type names (strings) to versions (integers)"}.

bad_version(K, V, Show) when is_atom(K) ->
    Fix = case [N || {N, Mod} <- maps:to_list(tether_etf:registered_types()), Mod =:= K] ++ [atom_to_binary(K)] of
              [<<"Elixir.", _/binary>> | _] -> "the type's name (its use Tether.Type name:)";  % an unregistered module
              [Name | _] when is_integer(V) -> io_lib:format("~ts => ~ts", [Show(Name, infinity), Show(V, 12)]);
              [Name | _] -> io_lib:format("~ts => 2 (an integer version)", [Show(Name, infinity)])
          end,
    io_lib:format("the key ~ts is an atom; type names are strings, as Python's are: write ~ts",
                  [Show(K, infinity), Fix]);
bad_version(K, _, Show) when not is_binary(K) ->
    io_lib:format("the key ~ts is not a type name (a string such as ~ts)", [Show(K, 12), Show(<<"acme.Point">>, infinity)]);
bad_version(K, V, Show) ->
    io_lib:format("~ts => ~ts: a version is an integer, the newest version of the type the reader reads",
                  [Show(K, infinity), Show(V, 12)]).

parent(#{<<"lineage">> := L} = P) when is_list(L) ->  % a frame's metadata, as tether:inspect/1 decoded it
    %% Its lineage is copied into the new frame: an older frame's atoms must not come with it.
    case parent(L) of
        {ok, Clean} -> {ok, P#{<<"lineage">> := Clean}};
        Error -> Error
    end;
parent(P) when is_map(P) -> {ok, P};
parent(P) when is_list(P) ->
    case metadata(#{<<"lineage">> => P}) of
        {ok, #{<<"lineage">> := Clean}} -> {ok, Clean};
        Error -> Error
    end;
parent(_) -> {expected, "the parent frame's metadata (a map, as tether:inspect/1 gives it) or its lineage (a list)"}.

step(S) when is_binary(S), byte_size(S) > 0 -> {ok, S};
step(_) -> {expected, "a non-empty binary naming this write"}.

%% User metadata and lineage are plain data that every reader decodes without
%% creating atoms (docs/format.md §2): Python reads them, and a node that does
%% not know an atom could not. Atoms other than true, false and nil are written
%% as their names, as JSON encoders treat Elixir's atom keys; pids, references,
%% ports, funs and bitstrings are refused, with their path.
metadata(M) when is_map(M) ->
    try {ok, plain(M, [])}
    catch
        throw:{not_plain, Path, {same_name, Keys}} ->
            {refused, fun(Show) ->
                          io_lib:format("~ts has keys that name the same key once atoms are written as binaries: ~ts",
                                        [path_text(Path, Show), Show(Keys, 12)])
                      end};
        throw:{not_plain, Path, V} ->
            {refused, fun(Show) ->
                          io_lib:format("~ts is ~ts: metadata holds plain data (binaries, numbers, booleans, nil, "
                                        "atoms, lists, tuples and maps of those, each key once)",
                                        [path_text(Path, Show), Show(V, 12)])
                      end}
    end;
metadata(_) -> {expected, "a map"}.

%% Path: the keys and indices from the value up to the root, rendered only for an error.
plain(V, _) when is_binary(V); is_number(V); is_boolean(V); V =:= nil -> V;
plain(A, _) when is_atom(A) -> atom_to_binary(A);
plain(L, Path) when is_list(L) -> plain_list(L, Path, 0);
plain(T, Path) when is_tuple(T) -> list_to_tuple(plain_list(tuple_to_list(T), Path, 0));
plain(M, Path) when is_map(M) ->
    Clean = maps:from_list([plain_pair(K, V, Path) || {K, V} <- maps:to_list(M)]),
    map_size(Clean) =:= map_size(M) orelse throw({not_plain, Path, {same_name, maps:keys(M)}}),
    Clean;
plain(V, Path) -> throw({not_plain, Path, V}).

plain_list([], _Path, _I) -> [];
plain_list([H | T], Path, I) -> [plain(H, [I | Path]) | plain_list(T, Path, I + 1)];
plain_list(Tail, Path, _I) -> throw({not_plain, Path, {improper_tail, Tail}}).

%% Keys as values (Python reads a tuple or number key as such), atoms as their names.
plain_pair(K, V, Path) when is_atom(K), not is_boolean(K), K =/= nil -> plain_pair(atom_to_binary(K), V, Path);
plain_pair(K, V, Path) -> {plain(K, Path), plain(V, [{key, K} | Path])}.

path_text(Path, Show) ->
    ["$" | [path_part(P, Show) || P <- lists:reverse(Path)]].

path_part({key, K}, Show) when is_binary(K) ->
    case unicode:characters_to_binary(K) of
        K -> [$., K];
        _ -> [$., Show(K, infinity)]  % not UTF-8: ~ts would fail on it
    end;
path_part({key, K}, Show) -> [$[, Show(K, infinity), $]];
path_part(I, _Show) -> [$[, integer_to_list(I), $]].

max_frame(infinity) -> {ok, infinity};
max_frame(N) when is_integer(N), N >= ?HEADER_SIZE -> {ok, N};
max_frame(_) -> {expected, io_lib:format("the largest frame to read, in bytes (at least a header, ~b), or infinity",
                                         [?HEADER_SIZE])}.

present(V) -> {ok, V}.

atomics_ref(A) when is_reference(A) -> {ok, A};
atomics_ref(_) -> {expected, "an atomics reference (atomics:new/2)"}.

%% A pool member's place (python -m tether.worker --pin): see tether_pool's pin.
pin_role(P = {Role, Offset, Index, Spinners})
  when (Role =:= spinner orelse Role =:= sleeper), is_integer(Offset), Offset >= 0, is_integer(Index), Index >= 0,
       is_integer(Spinners), Spinners >= 0 -> {ok, P};
pin_role(_) -> {expected, "{spinner | sleeper, Offset, Index, Spinners}, non-negative integers"}.

boolean(B) when is_boolean(B) -> {ok, B};
boolean(_) -> {expected, "true or false"}.

pid(P) when is_pid(P) -> {ok, P};
pid(_) -> {expected, "a pid"}.

one_of(Choices) ->
    fun(V) ->
        case lists:member(V, Choices) of
            true -> {ok, V};
            false -> {expected, "one of " ++ lists:join(", ", [atom_to_list(C) || C <- Choices])}
        end
    end.

name(A) when is_atom(A), A =/= undefined, A =/= nil -> {ok, {local, A}};
name({local, A}) when is_atom(A) -> {ok, {local, A}};
name({global, _} = N) -> {ok, N};
name({via, M, _} = N) when is_atom(M) -> {ok, N};
name(_) -> {expected, "an atom, {global, Term} or {via, Module, Term}"}.

%% @doc A child spec's id: the `name' option when there is one, so that two
%% named workers (or pools) can share a supervisor, else `Default'. Options
%% are checked when the child starts, not here.
%%
%% ```
%% w = tether_options:child_id(#{name => w}, tether_worker),
%% {global, w} = tether_options:child_id([{name, {global, w}}], tether_worker),
%% tether_worker = tether_options:child_id(#{}, tether_worker).
%% '''
-spec child_id(term(), atom()) -> term().
child_id(#{name := Name}, _Default) -> Name;
child_id(Opts, Default) when is_list(Opts), length(Opts) >= 0 ->  % length/1 fails the guard of an improper list
    case [N || {name, N} <- Opts] of
        [] -> Default;
        Names -> lists:last(Names)  % the one the options check keeps (maps:from_list: the last wins)
    end;
child_id(_, Default) -> Default.
