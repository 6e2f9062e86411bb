%% @doc tether streams on the BEAM: read, check, resume and write the chunked
%% streams Python's `tether.stream' writes and reads (docs/format.md §9).
%%
%% A stream is frames back to back: chunk frames (header flag bit 0, a
%% `stream' metadata map with `id', `seq', `offset') and an end frame
%% (`end', `count', `bytes', `digest'). The reader holds one frame at a time:
%% from a file or io device it reads the 64-byte header, refuses a frame
%% larger than `max_frame', then reads exactly the rest of that frame.
%%
%% Per chunk the reader checks, before decoding anything: the frame's header
%% and metadata CRC-32s, the flag and the `stream' map, that a payload
%% checksum is there and matches (crc32, or xxh3-64 through tether_xxh3), the
%% stream id, `seq' and `offset'. At the end frame it checks `count', `bytes'
%% and the chain digest, and that nothing follows in a binary or a file it
%% opened. Every failure is
%% `{error, {stream, Why, #{chunk := Seq, stream_id := Id, checkpoint := Cp,
%% hint := Text, ...}}}': `Why' says what (`incomplete', `missing_chunk',
%% `out_of_order', `foreign_chunk', `checksum_mismatch', `end_mismatch', ...),
%% `chunk' which chunk, `checkpoint' where to resume, `hint' what to do.
%%
%% Readers and writers are values: `next/1' and `write/2' return the new one.
-module(tether_stream).

-include_lib("kernel/include/file.hrl").
-include("../include/tether.hrl").

-export([open/1, open/2, next/1, checkpoint/1, close/1, verify/1, verify/2]).
-export([open_writer/2, write/2, write_tensor/4, abort/1]).
-export([resume_point/2]).

%% The largest frame a reader accepts unless told (`max_frame'): one chunk's
%% memory. Python's chunks are 8 MiB by default.
-define(DEFAULT_MAX_FRAME, (256 bsl 20)).
%% What the writer puts in one raw chunk of a binary (Python's CHUNK_SIZE).
-define(DEFAULT_CHUNK_SIZE, (8 bsl 20)).
-define(U64_MAX, 16#FFFFFFFFFFFFFFFF).
%% How long an io device passed as a source or sink has to answer one request
%% before it is refused as not an io device (io_server/1).
-define(IO_PROBE_MS, 5000).
%% A checkpoint's keys, as atoms (checkpoint/1) or binaries (Python's as_dict() through ETF or JSON).
-define(CHECKPOINT_KEYS, [stream_id, seq, offset, digest, ended,
                          <<"stream_id">>, <<"seq">>, <<"offset">>, <<"digest">>, <<"ended">>]).

-record(reader, {src, id = undefined, seq = 0, offset = 0, digest = 0, max_frame, decode_opts,
                 owned = false, complete = false,
                 at = 0}).  % where the next frame starts in the source: a file's byte position
-record(writer, {dev, owned = false, id, seq = 0, offset = 0, digest = 0, frame_opts, chunk_size,
                 type_versions = #{},  % the reader's type versions (tether:encode/2's type_versions)
                 float_atoms = false}).  % tether:encode/2's float_atoms
%% A writer is a value: after close/1 or abort/1 it is not used again. Writing
%% with it then is an io error for a file it opened (closed by then); on a
%% device the caller passed, the frames would follow the end frame, and
%% readers refuse them as trailing bytes.

-opaque reader() :: #reader{}.
-opaque writer() :: #writer{}.
-type source() :: binary() | {file, file:name_all()} | file:io_device().
-type checkpoint() :: #{stream_id := binary(), seq := non_neg_integer(), offset := non_neg_integer(),
                        digest := non_neg_integer(), ended := boolean()}.
-type summary() :: #{id := binary(), count := non_neg_integer(), bytes := non_neg_integer(),
                     digest := non_neg_integer()}.
%% Options are checked by tether_options: an unknown or ill-typed one is
%% `{bad_option, Key, Message}'; a source, sink or tensor that cannot be used is
%% `{bad_argument, Which, Message}'.
-type error() :: {error, {stream, atom(), map()} | {bad_option, atom(), binary()} | {bad_argument, atom(), binary()}
                          | tether_etf:type_error()}.
-export_type([reader/0, writer/0, checkpoint/0, summary/0]).

%% ------------------------------------------------------------------ reading

%% @doc As `open(Source, #{})'.
-spec open(source()) -> {ok, reader()} | error().
open(Source) -> open(Source, #{}).

%% @doc Start reading a stream from a binary (chunks decode as sub-binaries of
%% it), `{file, Path}' (opened here, closed by `close/1' or at the end), or an
%% open io device in binary mode (it is not read past the end frame): a file
%% (errors' `position' is a byte offset in it), or any other io server (a
%% StringIO, standard input in latin1 encoding, one over a socket; `position'
%% counts from where reading began). A pid
%% that does not answer an io request within 5 s is no io device:
%% `{error, {bad_argument, source, Message}}'. Options: `max_frame' (bytes, default 256 MiB, or `infinity'),
%% `resume => Checkpoint' (accept a continuation that starts there, as
%% Python's `StreamReader(resume=)'), and `safe', `max_uncompressed_size'
%% as in `tether:decode/2'.
%%
%% ```
%% {ok, W0} = tether_stream:open_writer({file, "/tmp/s.tthr"}, #{}),
%% {ok, W1} = tether_stream:write(W0, #{n => 1}),
%% {ok, _} = tether_stream:close(W1),
%% {ok, R0} = tether_stream:open({file, "/tmp/s.tthr"}),
%% {ok, #{n := 1}, R1} = tether_stream:next(R0),
%% {done, #{count := 1}} = tether_stream:next(R1).
%% '''
-spec open(source(), map() | list()) -> {ok, reader()} | error().
open(Source, Opts0) ->
    with_options(tether_options:stream_reader(Opts0), fun(Opts, {Id, Seq, Offset, Digest}) ->
        case source(Source, [read]) of
            {ok, Src, Owned} ->
                {ok, #reader{src = Src, owned = Owned, id = Id, seq = Seq, offset = Offset, digest = Digest,
                             at = start_position(Src),
                             max_frame = maps:get(max_frame, Opts, ?DEFAULT_MAX_FRAME),
                             decode_opts = maps:with([safe, max_uncompressed_size], Opts)}};
            Error -> Error
        end
    end).

%% Where reading starts in the source: a device the caller passes may be read
%% from already, and errors' `position' is a byte offset in the file. Only a
%% file is asked: another io server (a StringIO, standard input, one over a
%% socket) need not answer file:position/2's file request, and the caller
%% would wait forever; it is counted from where reading started, as a pipe.
start_position({dev, Dev}) ->
    case is_file(Dev) andalso file:position(Dev, cur) of
        {ok, At} when is_integer(At) -> At;
        _ -> 0  % a pipe: counted from where reading started
    end;
start_position(_) -> 0.

%% A raw or ram file (a file_descriptor: no message is sent), or the io server
%% file:open/2 starts, known by its code on its stack (its initial call is
%% erlang:apply/2); on another node it cannot be looked at, and counts as not a file.
is_file(Dev) when is_pid(Dev), node(Dev) =:= node() ->
    case erlang:process_info(Dev, current_stacktrace) of
        {current_stacktrace, Stack} -> lists:keymember(file_io_server, 1, Stack);
        undefined -> false
    end;
is_file(Dev) -> not is_pid(Dev).

%% Checked options and their resume point, or the first error.
with_options({ok, Opts}, Then) ->
    case resume_point(maps:get(resume, Opts, undefined)) of
        {ok, Point} -> Then(Opts, Point);
        Error -> Error
    end;
with_options(Error, _Then) -> Error.

%% @doc The next chunk's value (as `tether:decode/2' gives it), `{done,
%% Summary}' after a checked end frame, or `{error, {stream, Why, Info}}'.
%% After an error, `checkpoint/1' of the reader you passed says where a
%% writer may resume. After `done' the stream is finished, and a file the
%% reader opened is closed: read no further with that reader.
%%
%% ```
%% {ok, R} = tether_stream:open(<<>>),
%% {error, {stream, empty, #{chunk := 0}}} = tether_stream:next(R).
%% '''
-spec next(reader()) -> {ok, term(), reader()} | {done, summary()} | error().
next(#reader{} = R) -> step(R, true);
next(Other) -> not_a(reader, Other).

%% What every function here gives for a handle that is not one: an error, as
%% for a bad source, not a function_clause from deep inside.
not_a(reader, Got) -> bad_argument(reader, "a reader from tether_stream:open/1,2", Got);
not_a(writer, Got) -> bad_argument(writer, "a writer from tether_stream:open_writer/2", Got);
not_a(handle, Got) -> bad_argument(handle, "a reader or writer from tether_stream:open/1,2 or open_writer/2", Got).

%% @doc Where the reader (or writer) stands, as Python's
%% `Checkpoint.as_dict()': `stream_id', `seq' (the next chunk), `offset'
%% (bytes before it), `digest', and `ended'. close/1's checkpoint has `ended
%% => true', and a `resume' option refuses it, since a chunk after the end
%% frame would make the stream unreadable. A reader's checkpoint is where it
%% stands among the chunks: `next/1' hands back no reader with `done', so
%% one taken before it says `ended => false' (appending to a file from it is
%% refused all the same: see open_writer/2). A reader that has not seen a
%% chunk yet has no stream to resume: `{error, {stream, no_chunk_read, _}}'.
%%
%% ```
%% {ok, W} = tether_stream:open_writer({file, "/tmp/c.tthr"}, #{}),
%% #{seq := 0, offset := 0, digest := 0} = tether_stream:checkpoint(W).
%% '''
-spec checkpoint(reader() | writer()) -> checkpoint() | error().
checkpoint(#reader{id = undefined} = R) -> err(no_chunk_read, R, #{});
checkpoint(#reader{id = Id, seq = Seq, offset = Off, digest = D, complete = Ended}) -> cp(Id, Seq, Off, D, Ended);
checkpoint(#writer{id = Id, seq = Seq, offset = Off, digest = D}) -> cp(Id, Seq, Off, D, false);
checkpoint(Other) -> not_a(handle, Other).

cp(Id, Seq, Off, D, Ended) -> #{stream_id => Id, seq => Seq, offset => Off, digest => D, ended => Ended}.

%% @doc Close a reader (the file it opened, if any): `ok'. Close a writer:
%% write the end frame that makes the stream complete, close the file it
%% opened, and return `{ok, Checkpoint}' (with `ended => true': no writer may
%% resume from it). The writer is not used afterwards.
%%
%% ```
%% {ok, R} = tether_stream:open(<<>>),
%% ok = tether_stream:close(R).
%% '''
-spec close(reader() | writer()) -> ok | {ok, checkpoint()} | error().
close(#reader{src = {dev, Dev}, owned = true}) -> _ = file:close(Dev), ok;
close(#reader{}) -> ok;
close(#writer{id = Id, seq = Seq, offset = Off, digest = D} = W) ->
    End = #{<<"id">> => Id, <<"seq">> => Seq, <<"offset">> => Off, <<"end">> => true,
            <<"count">> => Seq, <<"bytes">> => Off, <<"digest">> => D},
    case emit(W, tether_formats:none(), End) of
        {ok, _, _} ->
            {ok, Cp} = abort(W),
            {ok, Cp#{ended := true}};
        Error -> Error
    end;
close(Other) -> not_a(handle, Other).

%% @doc As `verify(Source, #{})'.
-spec verify(source()) -> {ok, summary()} | error().
verify(Source) -> verify(Source, #{}).

%% @doc Check a whole stream without decoding any chunk: every check `next/1'
%% makes but the decoding. Holds one frame at a time; closes what it opened.
%%
%% ```
%% {error, {stream, empty, _}} = tether_stream:verify(<<>>).
%% '''
-spec verify(source(), map() | list()) -> {ok, summary()} | error().
verify(Source, Opts) ->
    case open(Source, Opts) of
        {ok, R} -> verify_loop(R);
        Error -> Error
    end.

verify_loop(R) ->
    case step(R, false) of
        {ok, _, R1} -> verify_loop(R1);
        {done, Summary} -> close(R), {ok, Summary};
        Error -> close(R), Error
    end.

%% One frame: read it, check it, decode it when asked.
step(#reader{complete = true} = R, _) -> {done, summary(R)};
step(R, Decode) ->
    case read_frame(R) of
        {ok, Frame, R1} -> chunk(Frame, R1, Decode);
        eof when R#reader.seq > 0 -> err(incomplete, R, #{});
        eof -> err(empty, R, #{});
        {error, Why, Extra} -> err(Why, R, Extra)
    end.

summary(#reader{id = Id, seq = Seq, offset = Off, digest = D}) ->
    #{id => Id, count => Seq, bytes => Off, digest => D}.

%% ------------------------------------------------------------------ one chunk

chunk(Frame, R, Decode) ->
    case tether_frame:open(Frame, false) of
        {ok, H, _MetaBin, Stored} ->
            case checks(H, Stored, R) of
                {ok, #{<<"end">> := true}} when map_get(payload_size, H) > 0; map_get(raw_size, H) > 0 ->
                    err(end_mismatch, R, #{field => payload, declared => map_get(raw_size, H), computed => 0,
                                           hint => <<"the end frame carries a payload, and a writer's holds none: "
                                                     "data was put in it, which no reader would decode">>});
                {ok, #{<<"end">> := true} = Info} -> finish(Info, named(Info, R), iolist_size(Frame));
                {ok, Info} -> accept(Frame, H, named(Info, R), Decode);
                {error, Why, Extra} -> err(Why, R, Extra)
            end;
        {error, Reason} -> err(bad_frame, R, #{reason => Reason})
    end.

%% What docs/format.md §9 says a reader checks, in order; the payload is
%% checked before anything decodes it.
checks(H, Stored, R) ->
    case stream_map(H) of
        {ok, Info} ->
            Checks = [fun() -> payload(H, Stored) end, fun() -> same_stream(Info, R) end,
                      fun() -> in_order(Info, R) end],
            case first_error(Checks) of
                ok -> {ok, Info};
                Error -> Error
            end;
        Error -> Error
    end.

first_error([]) -> ok;
first_error([Check | Rest]) ->
    case Check() of
        ok -> first_error(Rest);
        Error -> Error
    end.

%% tether_frame:open/2 decoded the metadata: a chunk's is read once.
stream_map(#{flags := Flags, metadata := Meta}) when Flags band ?FLAG_STREAM_CHUNK =/= 0 ->
    case Meta of
        #{<<"stream">> := Info} when is_map(Info) -> {ok, Info};
        _ -> {error, not_a_chunk, #{}}
    end;
stream_map(_) -> {error, not_a_chunk, #{}}.

payload(#{checksum := none}, _) -> {error, no_checksum, #{}};
payload(#{checksum := Kind, checksum_value := Stored}, Payload) ->
    case payload_checksum(Kind, Payload) of
        Stored -> ok;
        Computed -> {error, checksum_mismatch, #{stored => Stored, computed => Computed}}
    end.

payload_checksum(crc32, Payload) -> erlang:crc32(Payload);
payload_checksum(xxh3_64, Payload) -> tether_xxh3:hash64(Payload);
payload_checksum(Kind, _) -> Kind.

same_stream(#{<<"id">> := Id}, #reader{id = undefined}) ->
    case is_stream_id(Id) of
        true -> ok;
        false -> {error, not_a_chunk, #{field => id, got_id => Id,
                                        hint => <<"the chunk's stream id is not 32 lowercase hex digits, as every "
                                                  "writer makes it (and Python's reader requires): the frame was "
                                                  "not written by a stream writer">>}}
    end;
same_stream(#{<<"id">> := Id}, #reader{id = Id}) -> ok;
same_stream(Info, _) -> {error, foreign_chunk, #{got_id => maps:get(<<"id">>, Info, undefined)}}.

in_order(#{<<"seq">> := Seq, <<"offset">> := Off}, #reader{seq = Seq, offset = Off}) -> ok;
in_order(#{<<"seq">> := Seq} = Info, #reader{seq = Seq}) ->
    {error, bad_offset, #{got_offset => maps:get(<<"offset">>, Info, undefined)}};
in_order(#{<<"seq">> := Got}, #reader{seq = Want}) when is_integer(Got), Got > Want ->
    {error, missing_chunk, #{got_seq => Got}};
in_order(Info, _) -> {error, out_of_order, #{got_seq => maps:get(<<"seq">>, Info, undefined)}}.

accept(Frame, #{checksum_value := Ck, raw_size := Raw} = H, R, Decode) ->
    Next = R#reader{digest = chain(R#reader.digest, R#reader.seq, Ck), seq = R#reader.seq + 1,
                    offset = R#reader.offset + Raw, at = R#reader.at + iolist_size(Frame)},
    case Decode of
        false ->
            case undoable(H) of
                ok -> {ok, skipped, Next};
                {error, Reason} -> err(decode, R, #{reason => Reason})
            end;
        true ->
            case tether:decode(Frame, (R#reader.decode_opts)#{verify => false}) of
                {ok, Value} -> {ok, Value, Next};
                {error, Reason} -> err(decode, R, #{reason => Reason})
            end
    end.

%% verify/2 decodes nothing, yet says what next/1 would of a chunk the BEAM
%% cannot undo (lz4, zstd, a filter): a stream it passes must read. The
%% reason is tether_frame:unpack/3's, which next/1 gives through tether:decode/2.
undoable(#{compression := C, filter := {?FILTER_NONE, _}}) when C =:= none; C =:= gzip -> ok;
undoable(H) -> tether_frame:unpack(H, <<>>, 0).

%% The first chunk names the stream (same_stream/2 checked it is a binary).
named(#{<<"id">> := Id}, #reader{id = undefined} = R) -> R#reader{id = Id};
named(_, R) -> R.

finish(Info, R, EndSize) ->
    Expect = [{<<"count">>, R#reader.seq}, {<<"bytes">>, R#reader.offset}, {<<"digest">>, R#reader.digest}],
    case [{K, maps:get(K, Info, undefined), V} || {K, V} <- Expect, maps:get(K, Info, undefined) =/= V] of
        [{Field, Declared, Have} | _] ->
            err(end_mismatch, R, #{field => binary_to_atom(Field), declared => Declared, computed => Have});
        [] ->
            case trailing(R) of
                0 -> Done = R#reader{complete = true}, close(Done), {done, summary(Done)};
                N -> err(trailing_bytes, R, #{bytes => N, position => R#reader.at + EndSize})  % the junk's
            end
    end.

%% The chain digest: xxh3-64 over the previous digest, the chunk number and its payload checksum.
chain(Digest, Seq, Ck) -> tether_xxh3:hash64(<<Digest:64/little, Seq:64/little, Ck:64/little>>).

%% ------------------------------------------------------------------ the source

source(Bin, _) when is_binary(Bin) -> {ok, {bin, Bin, 0}, false};
source({file, Path}, Modes) ->
    case file:open(Path, [raw, binary | Modes]) of
        {ok, Dev} -> {ok, {dev, Dev}, true};
        {error, Reason} -> {error, {stream, io, #{chunk => 0, stream_id => undefined, reason => Reason, path => Path,
                                                  hint => <<"the stream's file could not be opened">>}}}
    end;
source(Dev, Modes) when is_pid(Dev) ->
    case io_server(Dev) of
        ok -> {ok, {dev, Dev}, false};
        {error, Why} ->
            Which = case lists:member(read, Modes) of true -> source; false -> sink end,
            bad_argument(Which, ["an io device (", Why, ")"], Dev)
    end;
source(Dev, _) when is_tuple(Dev), element(1, Dev) =:= file_descriptor -> {ok, {dev, Dev}, false};
source(Other, _) ->
    bad_argument(source, "a binary, {file, Path} or an io device in binary mode", Other).

%% An io server answers every request at once, {error, request} for one it does
%% not know (the io protocol); a pid that does not would leave every read or
%% write waiting forever. Asked from a helper process, whose death drops an
%% answer that comes too late.
io_server(Pid) ->
    {Helper, Mon} = spawn_monitor(fun() -> exit({answer, io:request(Pid, getopts)}) end),
    receive
        {'DOWN', Mon, process, Helper, {answer, {error, terminated}}} -> {error, "this process is not alive"};
        {'DOWN', Mon, process, Helper, {answer, _}} -> ok;
        {'DOWN', Mon, process, Helper, Reason} -> {error, io_lib:format("asking it failed: ~0tp", [Reason])}
    after ?IO_PROBE_MS ->
        exit(Helper, kill),
        receive {'DOWN', Mon, process, Helper, _} -> ok end,
        {error, io_lib:format("this process did not answer an io request (getopts) within ~b ms", [?IO_PROBE_MS])}
    end.

bad_argument(Which, Expected, Got) ->
    {error, {bad_argument, Which, unicode:characters_to_binary(io_lib:format("expected ~ts, got ~0tp", [Expected, Got]))}}.

%% The next whole frame: `eof' at a clean end of input, else at most max_frame bytes.
read_frame(#reader{src = {bin, B, Pos}} = R) ->
    case byte_size(B) - Pos of
        0 -> eof;
        Left when Left < ?HEADER_SIZE -> {error, truncated, #{need => ?HEADER_SIZE, have => Left}};
        Left ->
            sized(binary:part(B, Pos, ?HEADER_SIZE), R,
                  fun(Size) when Size > Left -> {error, truncated, #{need => Size, have => Left}};
                     (Size) -> {ok, binary:part(B, Pos, Size), R#reader{src = {bin, B, Pos + Size}}}
                  end)
    end;
read_frame(#reader{src = {dev, Dev}} = R) ->
    case read_n(Dev, ?HEADER_SIZE) of
        {ok, <<>>} -> eof;
        {ok, Head} when byte_size(Head) < ?HEADER_SIZE ->
            {error, truncated, #{need => ?HEADER_SIZE, have => byte_size(Head)}};
        {ok, Head} -> sized(Head, R, fun(Size) -> rest_of_frame(Dev, Head, Size, R) end);
        {error, Reason} -> read_error(Dev, Reason)
    end.

%% The header decides the frame's size; nothing more is read when it is over max_frame.
sized(Head, #reader{max_frame = Max}, Then) ->
    case tether_frame:header(Head) of
        {ok, #{frame_size := Size}} when Size > Max -> {error, too_large, #{size => Size, max_frame => Max}};
        {ok, #{frame_size := Size}} -> Then(Size);
        {error, Reason} -> {error, bad_frame, #{reason => Reason}}
    end.

rest_of_frame(Dev, Head, Size, R) ->
    case read_n(Dev, Size - ?HEADER_SIZE) of
        {ok, Body} when byte_size(Body) =:= Size - ?HEADER_SIZE -> {ok, <<Head/binary, Body/binary>>, R};
        {ok, Body} -> {error, truncated, #{need => Size, have => ?HEADER_SIZE + byte_size(Body)}};
        {error, Reason} -> read_error(Dev, Reason)
    end.

%% An io server in unicode mode (standard input's default) fails a read of
%% bytes that are not UTF-8 (collect_chars, say): the hint says how to read bytes.
read_error(Dev, Reason) when is_pid(Dev) ->
    {error, io, #{reason => Reason,
                  hint => <<"reading the io device failed (see reason); one in unicode mode (standard input's "
                            "default) cannot hand over bytes that are not UTF-8: "
                            "io:setopts(Dev, [binary, {encoding, latin1}]) first">>}};
read_error(_Dev, Reason) -> {error, io, #{reason => Reason}}.

%% Exactly N bytes, or fewer at the end of input (a device may return short reads).
read_n(_, 0) -> {ok, <<>>};
read_n(Dev, N) -> read_n(Dev, N, []).

read_n(Dev, N, Acc) ->
    case file:read(Dev, N) of
        {ok, Data} when byte_size(Data) =:= N -> {ok, iolist_to_binary(lists:reverse(Acc, [Data]))};
        {ok, Data} when is_binary(Data) -> read_n(Dev, N - byte_size(Data), [Data | Acc]);
        {ok, Data} when is_list(Data) -> read_n_list(Dev, N, list_to_binary(Data), Acc);
        eof -> {ok, iolist_to_binary(lists:reverse(Acc))};
        {error, _} = Error -> Error
    end.

read_n_list(_Dev, N, Data, Acc) when byte_size(Data) =:= N -> {ok, iolist_to_binary(lists:reverse(Acc, [Data]))};
read_n_list(Dev, N, Data, Acc) -> read_n(Dev, N - byte_size(Data), [Data | Acc]).

%% Bytes after the end frame: counted in a binary, and in a file this module
%% opened, from its size. A FIFO or a character device has none, and is not
%% read further, as Python does not: a writer may hold the pipe open after the
%% end frame, and a read would wait until it closes. A device the caller
%% passed is not read past the end frame.
trailing(#reader{src = {bin, B, Pos}}) -> byte_size(B) - Pos;
trailing(#reader{src = {dev, Dev}, owned = true}) ->
    case {file:position(Dev, cur), file:position(Dev, eof)} of
        {{ok, At}, {ok, End}} when End >= At -> End - At;
        _ -> 0
    end;
trailing(#reader{}) -> 0.

%% ------------------------------------------------------------------ errors

err(Why, R, Extra) ->
    Cp = case R#reader.id of
             undefined -> undefined;
             _ -> checkpoint(R)
         end,
    Hint = case {Why, Cp} of
               {missing_chunk, undefined} -> hint(later_part);  % nothing read yet: no checkpoint to resume from
               _ -> hint(Why)
           end,
    {error, {stream, Why, maps:merge(#{chunk => R#reader.seq, stream_id => R#reader.id, offset => R#reader.offset,
                                       position => R#reader.at, checkpoint => Cp, hint => Hint}, Extra)}}.

hint(incomplete) ->
    <<"the stream ended without its end frame: the writer stopped early or the input was cut; "
      "a writer given this checkpoint (resume) can finish it">>;
hint(empty) -> <<"the input holds no stream: no chunk and no end frame">>;
hint(truncated) -> <<"the input ends inside this chunk's frame: it was cut; resume from the checkpoint">>;
hint(too_large) -> <<"the frame is larger than this reader's max_frame: pass a larger max_frame if the writer's chunks are that large">>;
hint(bad_frame) -> <<"this chunk is not a valid tether frame (corrupted header or metadata)">>;
hint(not_a_chunk) -> <<"this frame is not a stream chunk (flag bit 0 or the stream metadata map is missing)">>;
hint(no_checksum) -> <<"the chunk carries no payload checksum, so the stream cannot be checked">>;
hint(checksum_mismatch) -> <<"the chunk's payload was altered on the way: resend the stream from the checkpoint">>;
hint(foreign_chunk) -> <<"the chunk belongs to another stream: a chunk from another stream was mixed in">>;
hint(missing_chunk) -> <<"a chunk is missing before this one: resume the stream from the checkpoint">>;
hint(later_part) ->
    <<"the input does not start at chunk 0 (see got_seq): chunk 0 is missing, or this continues an earlier part of "
      "the stream: read it with resume: the checkpoint the earlier part ended at, or read the parts joined in order">>;
hint(out_of_order) -> <<"this chunk is repeated or out of order: resume the stream from the checkpoint">>;
hint(bad_offset) -> <<"the chunk's offset does not follow on from the chunks before it">>;
hint(end_mismatch) -> <<"the end frame disagrees with the chunks received: a chunk was altered, dropped or replaced">>;
hint(trailing_bytes) -> <<"bytes follow the end frame: pass only the stream's bytes (two streams joined, or junk)">>;
hint(decode) -> <<"the chunk passed every stream check but its value could not be decoded on the BEAM">>;
hint(io) -> <<"reading or writing the stream failed (see reason)">>;
hint(no_chunk_read) -> <<"no chunk was read yet: there is no stream to resume">>;
hint(append_digest) ->
    <<"the checkpoint's digest (declared) is not the chain digest of the file's chunks (computed): the checkpoint "
      "was altered where it was kept (a u64 stored as a double, as JSON in JavaScript or a float column keeps it, "
      "loses its low bits), or it is another copy's. Store the digest as an integer or a string; to go on, take "
      "the checkpoint again: tether_stream:verify/1 (Tether.Stream.verify/1) of this file ends incomplete, its "
      "error's checkpoint is where to resume">>;
hint(append_mismatch) ->
    <<"appending continues a file only where the checkpoint stands: its last frame must be the chunk before it, of the "
      "same stream, and not an end frame. Resume from the checkpoint this file's reader gave when it stopped, or "
      "write the continuation to a new file; after a damaged chunk, truncate the file to the reader error's "
      "position (where that chunk starts) first">>.

resume_point(Cp) -> resume_point(Cp, fun(T, _Depth) -> io_lib:format("~0tp", [T]) end).

%% @doc A `resume' option's point: a checkpoint as checkpoint/1 returns it, or
%% with binary keys (Python's `as_dict()' through ETF or JSON); `undefined'
%% starts a new stream. As Python's `Checkpoint.from_dict': `stream_id' is 32
%% lowercase hex digits, `seq', `offset' and `digest' integers in
%% 0..2^64-1, and `ended' true, false, 1 or 0 (a database without booleans), or
%% missing, `nil' or `undefined' (checkpoints stored before it existed): false.
%% A bad field's message names it and what it must be. An ended checkpoint, or anything else, is `{error,
%% {bad_option, resume, Message}}', with `Show' writing the value (`Show(Term,
%% Depth)', as tether_options:explain/3 takes): Elixir's wrapper passes
%% `inspect/2', so its users read their own syntax.
%%
%% ```
%% Show = fun(T, _) -> io_lib:format("~0tp", [T]) end,
%% {error, {bad_option, resume, <<"expected what", _/binary>>}} = tether_stream:resume_point(#{seq => 1}, Show),
%% {error, {bad_option, resume, <<"the checkpoint of a complete stream", _/binary>>}} =
%%     tether_stream:resume_point(#{stream_id => binary:copy(<<"ab">>, 16), seq => 1, offset => 0, digest => 0,
%%                                  ended => true}, Show),
%% {error, {bad_option, resume, <<"checkpoint seq must be", _/binary>>}} =
%%     tether_stream:resume_point(#{stream_id => binary:copy(<<"ab">>, 16), seq => -1, offset => 0, digest => 0}, Show).
%% '''
-spec resume_point(term(), fun((term(), pos_integer() | infinity) -> iodata())) ->
          {ok, {binary() | undefined, non_neg_integer(), non_neg_integer(), non_neg_integer()}} |
          {error, {bad_option, resume, binary()}}.
resume_point(undefined, _Show) -> {ok, {undefined, 0, 0, 0}};
resume_point(Cp, Show) when is_map(Cp) ->
    case [K || K <- maps:keys(Cp), not lists:member(K, ?CHECKPOINT_KEYS)] of
        [] -> checkpoint_point(Cp, Show);
        %% As Python's Checkpoint.from_dict: a misspelt `ended' would let a writer append after the end.
        Unknown -> resume_error(["unknown checkpoint key(s) ", Show(lists:sublist(lists:sort(Unknown), 5), 5),
                                 ": a checkpoint has stream_id, seq, offset, digest and ended"])
    end;
resume_point(Cp, Show) -> bad_checkpoint(Cp, Show).

checkpoint_point(Cp, Show) ->
    case [field(Cp, K) || K <- [stream_id, seq, offset, digest]] of
        [{ok, Id}, {ok, Seq}, {ok, Off}, {ok, D}] ->
            Fields = [{stream_id, Id, is_stream_id(Id)}, {seq, Seq, is_u64(Seq)}, {offset, Off, is_u64(Off)},
                      {digest, D, is_u64(D)}],
            case [{K, V} || {K, V, false} <- Fields] of
                [{K, V} | _] -> field_error(K, V, Show);
                [] -> unless_ended(field(Cp, ended), {Id, Seq, Off, D}, Show)
            end;
        _ -> bad_checkpoint(Cp, Show)
    end.

unless_ended(Ended, {_, Seq, _, _} = Point, Show) ->
    case ended_flag(Ended) of
        false -> {ok, Point};
        true -> ended_error(Seq, Show);
        bad -> field_error(ended, element(2, Ended), Show)
    end.

%% A checkpoint field under its atom key or, from Python through ETF or JSON, its binary one.
field(Cp, K) ->
    case maps:find(K, Cp) of
        {ok, V} -> {ok, V};
        error -> maps:find(atom_to_binary(K), Cp)
    end.

%% Python's _flag: a database without booleans stores 1/0, one from before
%% `ended' existed nothing, which reaches the BEAM as nil (or undefined).
ended_flag(error) -> false;
ended_flag({ok, V}) when V =:= false; V =:= 0; V =:= nil; V =:= undefined -> false;
ended_flag({ok, V}) when V =:= true; V =:= 1 -> true;
ended_flag({ok, _}) -> bad.

is_u64(N) -> is_integer(N) andalso N >= 0 andalso N =< ?U64_MAX.

%% 32 lowercase hex digits, as new_id/0 and Python's secrets.token_hex(16)
%% make them, and as Python requires of a checkpoint and of every chunk.
is_stream_id(<<_:32/binary>> = Id) -> lists:all(fun is_hex/1, binary_to_list(Id));
is_stream_id(_) -> false.

is_hex(C) -> (C >= $0 andalso C =< $9) orelse (C >= $a andalso C =< $f).

field_error(Name, Value, Show) ->
    Must = case Name of
               stream_id -> "32 lowercase hex digits (a stream's id, as a writer makes it)";
               ended -> "true, false, 1, 0, nil or missing";
               _ -> "an integer in 0..2^64-1 (it is 64-bit on the wire; a double, as JSON in JavaScript or a "
                    "float column keeps it, rounds values above 2^53: store it as an integer or a string)"
           end,
    resume_error(["checkpoint ", atom_to_list(Name), " must be ", Must, ", got ", Show(Value, 5),
                  ". Pass what checkpoint/1 returned (or Python's Checkpoint.as_dict()), unchanged"]).

ended_error(Seq, Show) ->
    resume_error(["the checkpoint of a complete stream (ended, chunk ", Show(Seq, 1),
                  "): its end frame is written, and a chunk after it would make the "
                  "stream unreadable. Start a new stream, or resume from a checkpoint "
                  "taken before the end (abort's, or a reader's after an error)"]).

bad_checkpoint(Cp, Show) ->
    resume_error(["expected what checkpoint/1 returned (or Python's Checkpoint.as_dict()): stream_id, seq, offset "
                  "and digest (and ended), got ", Show(Cp, 20)]).

resume_error(Message) -> {error, {bad_option, resume, unicode:characters_to_binary(Message)}}.

%% ------------------------------------------------------------------ writing

%% @doc Start writing a stream to `{file, Path}' (created or truncated; with
%% `append => true' appended to) or an open io device in binary mode.
%% Options: `compression => none | gzip' (per chunk, default none), `level'
%% (gzip's), `chunk_size' (the largest raw chunk a binary is cut into,
%% default 8 MiB, as Python's), `metadata' (user metadata on every chunk),
%% `resume => Checkpoint' (continue that stream: same id, numbering and
%% digest). Every chunk carries a CRC-32 payload checksum. Appending onto a
%% file checks first that the file can take what follows: a new stream only
%% an empty or new file, a continuation only a file that ends where its
%% checkpoint stands (its last frame is the chunk before, of the same stream,
%% ending at the checkpoint's offset, and no end frame; when the file holds
%% the stream from chunk 0, the checkpoint's digest is the chain of its chunks).
%% `{error, {stream, append_mismatch, Info}}' otherwise, the file untouched;
%% `Info' says what the file ends with (`found'), which checkpoint field
%% disagrees (`field': `stream_id', `seq', `offset' or `digest'; the
%% checkpoint's value is `declared', the file's `computed') and what to do (`hint').
%% `resume' onto a file that is not empty needs `append => true': without it
%% the file would be truncated, and that is `{error, {bad_option, resume, _}}'.
%% `float_atoms' is tether:encode/2's, for each etf chunk.
%% `type_versions' (as tether:encode/2's) writes registered types at the
%% versions the reader knows; a type that cannot be written is `{error,
%% Reason}' from write/2 (`{type_failed, ...}', `{type_downgrade, ...}'),
%% with nothing written.
%%
%% ```
%% {ok, W0} = tether_stream:open_writer({file, "/tmp/w.tthr"}, #{compression => gzip}),
%% {ok, W1} = tether_stream:write(W0, <<"bytes become raw chunks">>),
%% {ok, #{seq := 1}} = tether_stream:close(W1).
%% '''
-spec open_writer(source(), map() | list()) -> {ok, writer()} | error().
open_writer(Sink, Opts0) ->
    with_options(tether_options:stream_writer(Opts0), fun(Opts, Point) ->
        case append_point(Sink, Opts, Point) of
            ok -> writer(Sink, Opts, Point);
            Error -> Error
        end
    end).

writer(Sink, Opts, {Id0, Seq, Off, D}) ->
    Mode = case maps:get(append, Opts, false) of true -> [append]; false -> [write] end,
    case source(Sink, Mode) of
        {ok, {dev, Dev}, Owned} ->
            Id = case Id0 of undefined -> new_id(); _ -> Id0 end,
            FrameOpts = #{compression => maps:get(compression, Opts, none),
                          level => maps:get(level, Opts, ?GZIP_DEFAULT_LEVEL),
                          checksum => crc32, metadata => maps:get(metadata, Opts, #{})},
            {ok, #writer{dev = Dev, owned = Owned, id = Id, seq = Seq, offset = Off, digest = D,
                         frame_opts = FrameOpts, chunk_size = maps:get(chunk_size, Opts, ?DEFAULT_CHUNK_SIZE),
                         type_versions = maps:get(type_versions, Opts, #{}),
                         float_atoms = maps:get(float_atoms, Opts, false)}};
        {ok, {bin, _, _}, _} ->
            bad_argument(sink, "{file, Path} or an io device (a binary cannot be written to)", binary);
        Error -> Error
    end.

%% ------------------------------------------------------------------ appending

%% Appending onto `{file, Path}': a new stream only onto an empty (or new)
%% file, and a continuation only where its checkpoint stands, the file's
%% last frame being chunk Seq - 1 of the same stream, ending at the
%% checkpoint's offset, and no end frame. Otherwise the new chunks would
%% follow an end frame or land out of place, and the file would fail every
%% reader; a stale checkpoint (a reader's from before it met the end frame,
%% say) is caught here, and so is a checkpoint whose digest was altered where
%% it was kept: the chain is rebuilt from the payload checksums in the
%% headers. Reads the frames' headers and the first and last one's metadata,
%% never a payload: about 2 us a chunk from a warm file.
append_point({file, Path}, #{append := true}, Point) ->
    case file:open(Path, [raw, binary, read]) of
        {ok, Dev} ->
            try last_chunk(Dev, 0, none, {0, 0}) of
                {ok, Last, Chain} ->
                    case appends_after(Last, Point, Path) of
                        ok -> chained(Dev, Chain, Point, Path);
                        Error -> Error
                    end;
                {error, Why} -> append_err(Path, Point, #{found => Why})
            after
                file:close(Dev)
            end;
        {error, enoent} -> ok;
        {error, Reason} -> {error, {stream, io, #{chunk => element(2, Point), stream_id => element(1, Point),
                                                  reason => Reason, path => Path, hint => hint(io)}}}
    end;
append_point({file, Path}, _, {Id, _, _, _}) when Id =/= undefined ->
    %% A continuation without append: true truncates the file: refused when that would drop chunks.
    %% Anything but a regular file goes on to the open, which says what is wrong with it.
    case file:read_file_info(Path) of
        {ok, #file_info{type = regular, size = Size}} when Size > 0 ->
            resume_error(io_lib:format("~ts holds ~b bytes, which writing without append: true would "
                                       "truncate: add append: true to continue the stream in that file, "
                                       "or write the continuation to a new one", [Path, Size]));
        _ -> ok
    end;
append_point(_, _, _) -> ok.

appends_after(none, _Point, _Path) -> ok;  % an empty file takes a new stream, or a continuation file's first chunk
appends_after(Last, {undefined, _, _, _} = Point, Path) -> append_err(Path, Point, #{found => stream_of(Last)});
appends_after({#{<<"end">> := true}, _}, Point, Path) -> append_err(Path, Point, #{found => end_frame});
appends_after({#{<<"id">> := Id, <<"seq">> := Last, <<"offset">> := At}, Raw}, {Id, Seq, Off, _}, _Path)
  when Last =:= Seq - 1, is_integer(At), At + Raw =:= Off ->
    ok;
%% The checkpoint field the file disagrees with (`declared'), and what the file says it must be (`computed').
appends_after({S, Raw} = Last, {Id, Seq, Off, _} = Point, Path) ->
    Field = case S of
                #{<<"id">> := Id, <<"seq">> := LastSeq} when LastSeq =:= Seq - 1 -> offset;
                #{<<"id">> := Id} -> seq;
                _ -> stream_id
            end,
    Want = #{stream_id => Id, seq => Seq, offset => Off},
    Have = #{stream_id => maps:get(<<"id">>, S, undefined), seq => next_seq(S), offset => next_offset(S, Raw)},
    append_err(Path, Point, #{found => stream_of(Last), field => Field, declared => maps:get(Field, Want),
                              computed => maps:get(Field, Have)}).

%% The chunk after the file's last one, as the checkpoint must have it.
next_seq(#{<<"seq">> := Seq}) when is_integer(Seq) -> Seq + 1;
next_seq(_) -> undefined.

next_offset(#{<<"offset">> := At}, Raw) when is_integer(At) -> At + Raw;
next_offset(_, _) -> undefined.

%% The checkpoint's digest against the chain of the file's chunks, when the
%% file holds the stream from chunk 0 up to the checkpoint: a continuation
%% file (its first chunk a later one) does not hold what the chain starts from.
chained(_Dev, {Count, _}, {_, Seq, _, _}, _Path) when Count =/= Seq -> ok;
chained(Dev, {_, Digest}, {_, _, _, D} = Point, Path) ->
    case {Digest, first_seq(Dev)} of
        {D, _} -> ok;
        {_, 0} -> append_err(Path, Point, #{found => {digest, Digest}, field => digest, declared => D,
                                            computed => Digest, hint => hint(append_digest)});
        _ -> ok
    end.

first_seq(Dev) ->
    case file:pread(Dev, 0, ?HEADER_SIZE) of
        {ok, Bin} ->
            {ok, H} = tether_frame:header(Bin),  % last_chunk/4 read it
            case stream_at(Dev, 0, H) of
                {ok, #{<<"seq">> := Seq}} -> Seq;
                _ -> undefined
            end;
        _ -> undefined
    end.

stream_of({S, _Raw}) -> maps:with([<<"id">>, <<"seq">>, <<"offset">>], S).

%% The file's last frame: its stream map and raw size, hopping from header to
%% header; `none' when empty. With it, how many frames there are and the chain
%% digest of their payload checksums, numbered from 0.
last_chunk(Dev, Pos, Last, {N, Digest} = Chain) ->
    case file:pread(Dev, Pos, ?HEADER_SIZE) of
        eof -> last_stream(Dev, Pos, Last, Chain);
        {ok, Bin} ->
            case tether_frame:header(Bin) of
                {ok, #{frame_size := Size, checksum_value := Ck} = H} ->
                    last_chunk(Dev, Pos + Size, {Pos, H}, {N + 1, chain(Digest, N, Ck)});
                {error, Reason} -> {error, {bad_frame, Pos, Reason}}
            end;
        {error, Reason} -> {error, Reason}
    end.

last_stream(_Dev, _End, none, Chain) -> {ok, none, Chain};
last_stream(Dev, End, {Pos, H = #{raw_size := Raw}}, Chain) ->
    case file:position(Dev, eof) of
        {ok, End} ->
            case stream_at(Dev, Pos, H) of
                {ok, S} -> {ok, {S, Raw}, Chain};
                Error -> Error
            end;
        {ok, Size} -> {error, {cut, Pos, Size}};  % the last frame runs past the end of the file
        Error -> Error
    end.

%% The stream map of the frame at Pos, whose header is H.
stream_at(Dev, Pos, H = #{meta_len := MLen}) ->
    case file:pread(Dev, Pos, ?HEADER_SIZE + MLen) of
        {ok, Bin} ->
            case tether_frame:metadata(Bin, H) of
                {ok, MetaBin} ->
                    case tether_meta:decode(MetaBin) of
                        {ok, #{<<"stream">> := S}} when is_map(S) -> {ok, S};
                        _ -> {error, {not_a_chunk, Pos}}
                    end;
                {error, Reason} -> {error, {bad_frame, Pos, Reason}}
            end;
        {error, Reason} -> {error, Reason};
        eof -> {error, {bad_frame, Pos, eof}}
    end.

append_err(Path, {Id, Seq, _, _}, #{found := Found} = Extra) ->
    Hint = case Found of
               {cut, Pos, _} ->
                   iolist_to_binary(["the file ends inside its last frame, which starts at byte ", integer_to_list(Pos),
                                     " (a writer stopped mid-chunk): truncate the file to that size, then append "
                                     "from the checkpoint its reader gave"]);
               _ when Id =:= undefined ->
                   <<"a new stream goes only onto an empty or new file: this one holds frames already. Write it to "
                     "a new file, or pass resume to continue the stream the file holds">>;
               _ -> hint(append_mismatch)
           end,
    {error, {stream, append_mismatch, maps:merge(#{chunk => Seq, stream_id => Id, path => Path, hint => Hint},
                                                 Extra)}}.

%% 32 lowercase hex digits, as Python's secrets.token_hex(16).
new_id() -> << <<(hex(N))>> || <<N:4>> <= crypto:strong_rand_bytes(16) >>.

hex(N) when N < 10 -> $0 + N;
hex(N) -> $a + N - 10.

%% @doc Write `Term' as chunks: a binary as raw chunks of at most
%% `chunk_size' bytes (Python reads them as bytes, as its `write_buffer'
%% writes them), any other term as one etf chunk. Returns the new writer.
%%
%% ```
%% {ok, W0} = tether_stream:open_writer({file, "/tmp/t.tthr"}, #{chunk_size => 4}),
%% {ok, W1} = tether_stream:write(W0, <<"0123456789">>),
%% #{seq := 3, offset := 10} = tether_stream:checkpoint(W1).
%% '''
-spec write(writer(), term()) -> {ok, writer()} | error().
write(#writer{chunk_size = Size} = W, Bin) when is_binary(Bin), byte_size(Bin) > Size ->
    <<Part:Size/binary, Rest/binary>> = Bin,
    case write(W, Part) of
        {ok, W1} -> write(W1, Rest);
        Error -> Error
    end;
write(W, Bin) when is_binary(Bin) -> chunk_out(W, tether_formats:raw(Bin));
write(W = #writer{type_versions = Versions, float_atoms = FloatAtoms}, Term) ->
    %% A registered type that cannot be written (its to_wire raised, its reader's version is too
    %% old) is the caller's {error, _}: nothing is written, and the stream goes on or is aborted.
    try tether_formats:etf(Term, false, Versions, FloatAtoms) of
        Built -> chunk_out(W, Built)
    catch error:{badarg, Reason} -> {error, Reason}
    end;
write(Other, _) -> not_a(writer, Other).

%% @doc Write an Nx-style tensor (a native-endian, row-major binary, as
%% `tether:tensor/3' takes it) as one ndarray chunk: Python reads a NumPy
%% array, and the BEAM reader the map `tether:decode/1' gives for one.
%%
%% ```
%% {ok, W0} = tether_stream:open_writer({file, "/tmp/n.tthr"}, #{}),
%% {ok, W1} = tether_stream:write_tensor(W0, <<1.0:32/float-native, 2.0:32/float-native>>, {f, 32}, {2}),
%% {error, {bad_argument, tensor, _}} = tether_stream:write_tensor(W1, <<1>>, {f, 32}, {2}).
%% '''
-spec write_tensor(writer(), binary(), tether:nx_type(), tuple() | [non_neg_integer()]) -> {ok, writer()} | error().
write_tensor(#writer{} = W, Data, Type, Shape) ->
    try tether_formats:ndarray(Data, Type, Shape) of
        Built -> chunk_out(W, Built)
    catch
        error:{badarg, Reason} -> bad_argument(tensor, io_lib:format("data whose size matches the type and shape (~0tp)",
                                                                      [Reason]), {Type, Shape});
        error:function_clause -> bad_argument(tensor, "an Nx type such as {f, 32} and a shape", {Type, Shape})
    end;
write_tensor(Other, _, _, _) -> not_a(writer, Other).

chunk_out(#writer{id = Id, seq = Seq, offset = Off, digest = D} = W, Built) ->
    case emit(W, Built, #{<<"id">> => Id, <<"seq">> => Seq, <<"offset">> => Off}) of
        {ok, Ck, Raw} -> {ok, W#writer{seq = Seq + 1, offset = Off + Raw, digest = chain(D, Seq, Ck)}};
        Error -> Error
    end.

%% Build and write one frame; its payload checksum and raw length, read back from its header.
emit(#writer{dev = Dev, frame_opts = Opts} = W, {FormatId, Name, TypeInfo, Payload}, Stream) ->
    Frame = tether_frame:build(FormatId, Name, TypeInfo, Payload, Opts#{stream => Stream}),
    {ok, #{checksum_value := Ck, raw_size := Raw}} = tether_frame:header(prefix(Frame, ?HEADER_SIZE)),
    case file:write(Dev, Frame) of
        ok -> {ok, Ck, Raw};
        {error, Reason} -> writer_err(io, W, #{reason => Reason})
    end.

%% The first N bytes of iodata, without flattening the rest (the payload).
prefix(IoData, N) -> iolist_to_binary(take(IoData, N)).

take(_, 0) -> [];
take(Bin, N) when is_binary(Bin) -> binary:part(Bin, 0, min(N, byte_size(Bin)));
take(B, _) when is_integer(B) -> B;
take([H | T], N) ->
    Part = take(H, N),
    [Part | take(T, N - iolist_size(Part))];
take([], _) -> [].

%% @doc Stop writing without an end frame (readers see an incomplete stream
%% they can resume from the returned checkpoint); closes the file it opened.
%%
%% ```
%% {ok, W} = tether_stream:open_writer({file, "/tmp/a.tthr"}, #{}),
%% {ok, #{seq := 0}} = tether_stream:abort(W).
%% '''
-spec abort(writer()) -> {ok, checkpoint()} | error().
abort(#writer{dev = Dev, owned = Owned} = W) ->
    _ = case Owned of true -> file:close(Dev); false -> ok end,
    {ok, checkpoint(W)};
abort(Other) -> not_a(writer, Other).

writer_err(Why, #writer{id = Id, seq = Seq} = W, Extra) ->
    {error, {stream, Why, maps:merge(#{chunk => Seq, stream_id => Id, checkpoint => checkpoint(W),
                                       hint => hint(Why)}, Extra)}}.
