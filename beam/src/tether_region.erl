%% @doc Frames in files: the newest frame of a tether shared-memory region,
%% or a frame someone named by file, offset and length.
%%
%% A region (docs/format.md §7) is read with pread, never mapped: the header,
%% the slot it names, the frame, and the slot again. The file is not trusted:
%% every read is checked against the file's size before it is made (a slot
%% may point anywhere), a read that returns fewer bytes than asked for is an
%% error, and so is a frame whose header disagrees with its slot's length:
%% read_region returns a whole frame or an error, never part of one.
-module(tether_region).

-include("../include/tether.hrl").
-include_lib("kernel/include/file.hrl").

-export([read_region/1, read_frame/3, read_frame/4]).

%% @doc The newest committed frame of a region written by Python's tether.shm
%% (`Region.path' names its file). A file that is not a region is an error.
%%
%% ```
%% {error, enoent} = tether_region:read_region("/dev/shm/no-such-tether-region"),
%% ok = file:write_file("/tmp/tether-not-a-region", binary:copy(<<0>>, 4096)),
%% {error, not_a_tether_region} = tether_region:read_region("/tmp/tether-not-a-region").
%% '''
-spec read_region(file:filename_all()) -> {ok, binary()} | {error, term()}.
read_region(Path) ->
    with_file(Path, fun(Fd, Size) ->
        case pread_exact(Fd, Size, 0, ?REGION_HEAD_SIZE) of
            {ok, <<?REGION_HEAD(?REGION_VERSION, ?REGION_HEADER_SIZE, _Gen, _Pid, _Start, _Cap, _Cursor,
                                Slots, Latest)>>} when Slots =:= ?REGION_SLOTS ->
                newest(Fd, Size, Latest);
            {ok, <<?REGION_MAGIC, _/binary>>} -> {error, {bad_region_header, <<"unknown version or layout">>}};
            {ok, _} -> {error, not_a_tether_region};
            {error, {truncated, _, _}} -> {error, not_a_tether_region};
            Error -> Error
        end
    end).

%% A slot's seq is a seqlock: even and non-zero once committed. The slot is
%% read again after the frame: the frame must not have changed while read.
newest(_Fd, _Size, 0) -> {error, no_committed_frame};
newest(_Fd, _Size, Latest) when Latest > ?REGION_SLOTS -> {error, {bad_region_header, {latest, Latest}}};
newest(Fd, Size, Latest) ->
    SlotAt = ?REGION_HEAD_SIZE + (Latest - 1) * ?SLOT_SIZE,
    case slot(Fd, Size, SlotAt) of
        {ok, {_, _, Seq}} when Seq =:= 0; Seq rem 2 =:= 1 -> {error, no_committed_frame};
        {ok, {Off, Len, _}} when Off < ?REGION_HEADER_SIZE; Len < ?HEADER_SIZE ->
            {error, {bad_slot, Off, Len}};
        {ok, Slot = {Off, Len, _}} ->
            case pread_exact(Fd, Size, Off, Len) of
                {ok, Frame} ->
                    case slot(Fd, Size, SlotAt) of
                        {ok, Slot} -> whole(Frame);
                        {ok, _} -> {error, frame_changed_while_reading};
                        Error -> Error
                    end;
                Error -> Error
            end;
        Error -> Error
    end.

%% The slot's length must be the frame's own size: a slot that says
%% otherwise would hand out part of a frame, or a frame and what follows it.
whole(Frame) ->
    case tether_frame:header(Frame) of
        {ok, #{frame_size := Size}} when Size =:= byte_size(Frame) -> {ok, Frame};
        {ok, #{frame_size := Size}} -> {error, {slot_length_mismatch, byte_size(Frame), Size}};
        Error -> Error
    end.

slot(Fd, Size, At) ->
    case pread_exact(Fd, Size, At, ?SLOT_SIZE) of
        {ok, <<?SLOT(Off, Len, Seq, _)>>} -> {ok, {Off, Len, Seq}};
        Error -> Error
    end.

%% @doc `Len' bytes at `Offset' of a file; `{error, {truncated, Len, Got}}'
%% when the file holds fewer.
%%
%% ```
%% Frame = iolist_to_binary(tether:encode([1, 2])),
%% ok = file:write_file("/tmp/tether-frame-example", [<<"head">>, Frame]),
%% {ok, Frame} = tether_region:read_frame("/tmp/tether-frame-example", 4, byte_size(Frame)),
%% Len = byte_size(Frame) + 1,
%% {error, {truncated, Len, _}} = tether_region:read_frame("/tmp/tether-frame-example", 4, Len).
%% '''
-spec read_frame(file:filename_all(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
read_frame(Path, Offset, Len) -> read_frame(Path, Offset, Len, fun() -> ok end).

%% @doc As {@link read_frame/3}, calling `Opened()' once the file is open,
%% before it is read: a reader that watches the read can then tell an open(2)
%% that blocks (a lease on the file) from a long read.
%%
%% ```
%% {error, enoent} = tether_region:read_frame("/nonexistent/tether-x", 0, 1, fun() -> ok end).
%% '''
-spec read_frame(file:filename_all(), non_neg_integer(), non_neg_integer(), fun(() -> term())) ->
          {ok, binary()} | {error, term()}.
read_frame(_Path, Offset, Len, _Opened) when not is_integer(Offset); not is_integer(Len); Offset < 0; Len < 0 ->
    {error, {bad_range, Offset, Len}};
read_frame(Path, Offset, Len, Opened) ->
    with_file(Path, fun(Fd, Size) -> Opened(), pread_exact(Fd, Size, Offset, Len) end).

%% Exactly `Len' bytes at `Offset', never more than the file holds: a length
%% read from the file itself is checked against its size before it is used.
pread_exact(_Fd, Size, Offset, Len) when Offset + Len > Size ->
    {error, {truncated, Len, max(0, Size - Offset)}};
pread_exact(_Fd, _Size, _Offset, 0) ->
    {ok, <<>>};
pread_exact(Fd, _Size, Offset, Len) ->
    case file:pread(Fd, Offset, Len) of
        {ok, Bin} when byte_size(Bin) =:= Len -> {ok, Bin};
        {ok, Bin} -> {error, {truncated, Len, byte_size(Bin)}};  % the file shrank meanwhile
        eof -> {error, {truncated, Len, 0}};
        Error -> Error
    end.

%% Only a regular file is opened: open(2) on a FIFO named like a region waits for a
%% writer for ever, holding this process and a dirty I/O scheduler.
with_file(Path, Fun) ->
    case file:read_file_info(Path, [raw]) of
        {ok, #file_info{type = regular}} -> open_file(Path, Fun);
        {ok, #file_info{type = Type}} -> {error, {not_a_regular_file, Type}};
        Error -> Error
    end.

open_file(Path, Fun) ->
    case file:open(Path, [read, raw, binary]) of
        {ok, Fd} ->
            try
                case file:position(Fd, eof) of
                    {ok, Size} -> Fun(Fd, Size);
                    Error -> Error
                end
            after
                file:close(Fd)
            end;
        Error -> Error
    end.
