%% @doc The messages of the worker protocol (docs/format.md §8) on the BEAM:
%% the hello it sends, the call frames, and what it accepts back.
%%
%% Every message from Python is decoded with `tether:decode/1', that is with
%% `binary_to_term(_, [safe])': Python cannot create atoms on this node. The
%% atoms the protocol itself uses are written in this module, so they exist
%% once it is loaded (`atoms/0' lists them; a test checks the list).
-module(tether_protocol).

-include("../include/tether.hrl").

-export([hello/0, call/6, call/7, stats/1, stats/2, release_shm/1, compact/1, decode/1, form/1, check_ready/1,
         compatible/2, beam_version/0, capabilities/0, atoms/0]).

-export_type([form/0]).

%% How a message goes out: an etf frame, or a compact message (docs/format.md
%% §8) to a worker whose ready says it reads them.
-type form() :: frame | compact.

%% @doc The first message: `{hello, Info}' with what this node reads.
%%
%% ```
%% {ok, {hello, #{tether := <<"0.1.0">>}}} = tether:decode(iolist_to_binary(tether_protocol:hello())).
%% '''
-spec hello() -> iodata().
hello() ->
    Info = (capabilities())#{tether => beam_version(),
                             otp => list_to_binary(erlang:system_info(otp_release))},
    tether:encode({hello, Info}).

%% @doc What the BEAM reads: frame versions, formats, compressions, checksums,
%% and the newest version of each registered `Tether.Type' (`types'), so that
%% the worker writes user types at versions this node reads. This mirrors
%% tether:decode/2 (tether_formats, tether_frame, tether_etf).
%%
%% ```
%% #{frame_versions := [1], compressions := [<<"none">>, <<"gzip">>], types := #{}} =
%%     tether_protocol:capabilities().
%% '''
-spec capabilities() -> #{atom() => [binary() | pos_integer()] | #{binary() => term()}}.
capabilities() ->
    #{frame_versions => [?FRAME_VERSION],
      formats => lists:sort([atom_to_binary(F) || F <- maps:keys(tether_formats:schemas())]),
      compressions => [<<"none">>, <<"gzip">>],
      checksums => [<<"none">>, <<"crc32">>],
      format_schemas => maps:from_list([{atom_to_binary(F), [Oldest, Newest]}
                                        || {F, {Oldest, Newest}} <- maps:to_list(tether_formats:schemas())]),
      types => tether_etf:type_versions()}.

%% @doc This node's tether version, as the handshake carries it (and every
%% frame's `producer').
%%
%% ```
%% Vsn = tether_protocol:beam_version(),
%% {ok, #{metadata := #{<<"producer">> := <<"tether-beam/", Vsn/binary>>}}} =
%%     tether:inspect(iolist_to_binary(tether:encode(1))).
%% '''
-spec beam_version() -> binary().
beam_version() -> list_to_binary(?TETHER_VSN).

%% @doc The frame of one call. `Args' is the argument list, or
%% `{shm, Path, Len}' for arguments written to a file beforehand. `Hints'
%% go into the call's Opts: `plain => true' when the arguments hold nothing
%% Python decodes further (tether_args:plain/1).
-spec call(pos_integer(), binary(), binary(), list() | {shm, binary(), non_neg_integer()},
           arrow | rows | columns, map()) -> iodata().
call(Id, Module, Function, Args, Tables, Hints) -> call(Id, Module, Function, Args, Tables, Hints, frame).

%% @doc As {@link call/6}, as a frame or as a compact message.
%%
%% ```
%% {ok, {call, 1, <<"m">>, <<"f">>, [2], #{}}} =
%%     tether_protocol:decode(iolist_to_binary(tether_protocol:call(1, <<"m">>, <<"f">>, [2], arrow, #{}, compact))).
%% '''
-spec call(pos_integer(), binary(), binary(), list() | {shm, binary(), non_neg_integer()},
           arrow | rows | columns, map(), form()) -> iodata().
call(Id, Module, Function, Args, Tables, Hints, Form) ->
    Opts0 = case Hints of
                #{plain := true} -> #{plain => true};
                _ -> #{}
            end,
    Opts = case Tables of
               arrow -> Opts0;
               _ -> Opts0#{tables => Tables}
           end,
    out({call, Id, Module, Function, Args, Opts}, Form).

out(Term, frame) -> tether:encode(Term);
out(Term, compact) -> compact(Term).

%% @doc `Term' as a compact message: the magic, the CRC-32 of its ETF, the ETF
%% (written as an etf frame's payload, registered `Tether.Type' structs in wire
%% form). Raises `badarg' for a term an etf frame cannot hold either.
%%
%% ```
%% {ok, {echo, 1}} = tether_protocol:decode(iolist_to_binary(tether_protocol:compact({echo, 1}))).
%% '''
-spec compact(term()) -> iodata().
compact(Term) ->
    {_, _, _, Etf} = tether_formats:etf(Term, false, #{}),
    [<<?COMPACT_MAGIC, (erlang:crc32(Etf)):?LE(?F_COMPACT_CRC32)>>, Etf].

%% @doc The form to send a worker whose ready said `Info': compact when it
%% lists compact messages (workers from before them do not).
%%
%% ```
%% compact = tether_protocol:form(#{messages => [<<"frame">>, <<"compact">>]}).
%% frame = tether_protocol:form(#{}).
%% '''
-spec form(map()) -> form().
form(#{messages := Forms}) -> listed(Forms);
form(_) -> frame.

%% Not lists:member/2: the ready is Python's, and an improper list must not raise.
listed([<<"compact">> | _]) -> compact;
listed([_ | Rest]) -> listed(Rest);
listed(_) -> frame.

%% @doc The frame of a `{stats, Id}' request: Python answers
%% `{reply, Id, {ok, Snapshot}}' with its metrics snapshot.
%%
%% ```
%% {ok, {stats, 7}} = tether:decode(iolist_to_binary(tether_protocol:stats(7))).
%% '''
-spec stats(pos_integer()) -> iodata().
stats(Id) -> stats(Id, frame).

%% @doc As {@link stats/1}, as a frame or as a compact message.
-spec stats(pos_integer(), form()) -> iodata().
stats(Id, Form) -> out({stats, Id}, Form).

%% @doc The `{release_shm}' notice: no call has used shared memory for the
%% worker's `shm_keep' ms and the BEAM removed its arguments file, so Python
%% lets go of its mapping of it and of its reply regions. Python does not
%% answer it, and is sent it only when its ready lists `<<"release_shm">>'
%% under `<<"notices">>'.
%%
%% ```
%% {ok, {release_shm}} = tether:decode(iolist_to_binary(tether_protocol:release_shm(frame))).
%% '''
-spec release_shm(form()) -> iodata().
release_shm(Form) -> out({release_shm}, Form).

%% @doc One message from Python: a frame or a compact message. Unknown atoms
%% make it `{error, _}' (both go through `binary_to_term(_, [safe])'), never
%% new atoms; a compact message whose CRC-32 does not match is
%% `{error, {checksum_mismatch, compact_message}}'. Never raises.
%%
%% ```
%% {ok, {reply, 1, {ok, 2}}} = tether_protocol:decode(iolist_to_binary(tether:encode({reply, 1, {ok, 2}}))),
%% Compact = iolist_to_binary(tether_protocol:compact({echo, 1})),
%% {ok, {echo, 1}} = tether_protocol:decode(Compact),
%% Changed = <<(binary:part(Compact, 0, byte_size(Compact) - 1))/binary, 2>>,
%% {error, {checksum_mismatch, compact_message}} = tether_protocol:decode(Changed).
%% '''
-spec decode(binary()) -> {ok, term()} | {error, term()}.
decode(<<"PING", _/binary>> = Ping) -> {ok, {ping, Ping}};
decode(<<?COMPACT_MAGIC, Crc:?LE(?F_COMPACT_CRC32), Etf/binary>>) ->
    case erlang:crc32(Etf) of
        Crc ->
            %% An unknown atom is named from the reply's result, {reply, Id, {ok, Result}}, not the message.
            Opts = #{safe => true, max_uncompressed_size => ?MAX_UNCOMPRESSED_DEFAULT, root => [2, 1]},
            try tether_formats:decode(etf, #{}, Etf, Opts)
            catch Class:Reason -> {error, {malformed, compact_message, Class, Reason}}
            end;
        _ -> {error, {checksum_mismatch, compact_message}}
    end;
decode(Message) -> tether:decode(Message).

%% @doc Whether the `{ready, Info}' a worker sent lets us work with it.
%%
%% ```
%% {ok, _} = tether_protocol:check_ready(#{tether => tether_protocol:beam_version(), python => <<"3.11.7">>}),
%% {error, {incompatible, #{python := <<"9.0.0">>}}} = tether_protocol:check_ready(#{tether => <<"9.0.0">>}),
%% {error, {bad_handshake, nope}} = tether_protocol:check_ready(nope).
%% '''
-spec check_ready(term()) -> {ok, map()} | {error, term()}.
check_ready(#{tether := Python} = Info) when is_binary(Python) ->
    Beam = beam_version(),
    case compatible(Python, Beam) of
        true -> {ok, Info};
        false -> {error, {incompatible, #{python => Python, beam => Beam}}}
    end;
check_ready(Info) ->
    {error, {bad_handshake, Info}}.

%% @doc Versions are compatible when their major numbers are equal, and for
%% 0.x releases their minor numbers too.
%%
%% ```
%% true = tether_protocol:compatible(<<"0.1.3">>, <<"0.1.0">>).
%% false = tether_protocol:compatible(<<"0.2.0">>, <<"0.1.0">>).
%% true = tether_protocol:compatible(<<"1.4.0">>, <<"1.0.2">>).
%% false = tether_protocol:compatible(<<"abc">>, <<"xyz">>).
%% '''
-spec compatible(binary(), binary()) -> boolean().
compatible(A, B) ->
    case {major_minor(A), major_minor(B)} of
        {{invalid, _}, _} -> false;  % before the clauses below: `invalid' > 0 in term order
        {_, {invalid, _}} -> false;
        {{0, Minor}, {0, Minor}} -> true;
        {{Major, _}, {Major, _}} when Major > 0 -> true;
        _ -> false
    end.

%% Major and minor of at most 9 digits each: a peer's "9999...9.1" of a
%% million digits cost list_to_integer/1 15 s. What follows them (a long
%% local label, say) is not read.
major_minor(Vsn) when not is_binary(Vsn) -> {invalid, Vsn};
major_minor(Vsn) ->
    case re:run(Vsn, "^(\\d{1,9})\\.(\\d{1,9})(?!\\d)", [{capture, all_but_first, list}]) of
        {match, [Major, Minor]} -> {list_to_integer(Major), list_to_integer(Minor)};
        nomatch -> {invalid, Vsn}
    end.

%% @doc Every atom the protocol carries from Python to the BEAM: they must
%% exist before a reply is decoded with `[safe]', and they do, being written here.
%%
%% ```
%% true = lists:member('$tether_shm', tether_protocol:atoms()).
%% '''
-spec atoms() -> [atom()].
atoms() ->
    [ready, refused, import_error, incompatible, reply, ok, error, python, undefined_function,
     cancelled, bad_request, log, debug, info, warning, critical, '$tether', '$tether_shm',
     '$tether_table', shm, nan, infinity, neg_infinity, true, false, nil,
     tether, otp, pid, modules, frame_versions, messages, formats, compressions, checksums, speedups,
     beam, arrow, rows, columns, tables, format_schemas, schemas, types, alert, firing, cleared, echo,
     %% the keys of a log record's Meta
     module, function, file, line, thread].
