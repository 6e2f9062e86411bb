%% @doc Frames in files: the newest frame of a tether shared-memory region,
%% or a frame someone named by file, offset and length.
%%
%% A region (docs/format.md §7) is read with pread, never mapped: the header,
%% the slot it names, the frame, and the slot again.
-module(tether_region).

-include("../include/tether.hrl").

-export([read_region/1, read_frame/3]).

%% @doc The newest committed frame of a region written by Python's tether.shm.
-spec read_region(file:filename_all()) -> {ok, binary()} | {error, term()}.
read_region(Path) ->
    with_file(Path, fun(Fd) ->
        case file:pread(Fd, 0, ?REGION_HEAD_SIZE) of
            {ok, <<?REGION_HEAD(?REGION_VERSION, ?REGION_HEADER_SIZE, _Gen, _Pid, _Start, _Cap, _Cursor,
                                Slots, Latest)>>}
              when Slots =:= ?REGION_SLOTS, Latest >= 1, Latest =< ?REGION_SLOTS ->
                newest(Fd, ?REGION_HEAD_SIZE + (Latest - 1) * ?SLOT_SIZE);
            {ok, <<?REGION_MAGIC, _/binary>>} -> {error, no_committed_frame};
            {ok, _} -> {error, not_a_tether_region};
            eof -> {error, not_a_tether_region};
            Error -> Error
        end
    end).

%% A slot's seq is a seqlock: even and non-zero once committed. The slot is
%% read again after the frame: the frame must not have changed while read.
newest(Fd, SlotAt) ->
    {ok, <<?SLOT(Off, Len, Seq, _)>>} = file:pread(Fd, SlotAt, ?SLOT_SIZE),
    case Seq =/= 0 andalso Seq rem 2 =:= 0 of
        false -> {error, no_committed_frame};
        true ->
            {ok, Frame} = file:pread(Fd, Off, Len),
            case file:pread(Fd, SlotAt, ?SLOT_SIZE) of
                {ok, <<?SLOT(Off, Len, Seq, _)>>} -> {ok, Frame};
                _ -> {error, frame_changed_while_reading}
            end
    end.

%% @doc `Len' bytes at `Offset' of a file.
-spec read_frame(file:filename_all(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
read_frame(Path, Offset, Len) ->
    with_file(Path, fun(Fd) ->
        case file:pread(Fd, Offset, Len) of
            {ok, Bin} when byte_size(Bin) =:= Len -> {ok, Bin};
            {ok, Bin} -> {error, {truncated, Len, byte_size(Bin)}};
            eof -> {error, {truncated, Len, 0}};
            Error -> Error
        end
    end).

with_file(Path, Fun) ->
    case file:open(Path, [read, raw, binary]) of
        {ok, Fd} -> try Fun(Fd) after file:close(Fd) end;
        Error -> Error
    end.
