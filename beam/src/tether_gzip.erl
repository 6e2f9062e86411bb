%% @doc gzip on the BEAM: compress a payload, and inflate one within bounds.
%%
%% Inflating is bounded twice: a declared size over the limit is refused
%% before any work, and the stream is inflated in zlib's small steps, the
%% output growing by what each step produced and stopping as soon as it
%% passes the declared size. A small frame that claims gigabytes, or that
%% inflates to more than it claims, costs at most the limit.
-module(tether_gzip).

-include("../include/tether.hrl").

-export([deflate/2, inflate/2, inflate/3, inflate_zlib/3]).

%% @doc One gzip member (RFC 1952) holding `Data', at `Level' (0-9).
%%
%% ```
%% {ok, <<"abc">>} = tether_gzip:inflate(tether_gzip:deflate(<<"abc">>, 6), 3, 100).
%% '''
-spec deflate(iodata(), 0..9) -> binary().
deflate(Data, Level) ->
    Z = zlib:open(),
    try
        ok = zlib:deflateInit(Z, Level, deflated, ?GZIP_WINDOW_BITS, 8, default),
        Out = zlib:deflate(Z, Data, finish),
        ok = zlib:deflateEnd(Z),
        iolist_to_binary(Out)
    after
        zlib:close(Z)
    end.

%% @doc `inflate/3' with the default limit (4 GiB, as Python's `tether.Limits').
-spec inflate(binary(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
inflate(Data, Raw) -> inflate(Data, Raw, ?MAX_UNCOMPRESSED_DEFAULT).

%% @doc The gzip stream `Data' inflated to exactly `Raw' bytes, refused up
%% front when `Raw' is over `Max'. Never raises.
%%
%% ```
%% {error, {too_large, 1099511627776, 1024}} = tether_gzip:inflate(<<>>, 1 bsl 40, 1024).
%% '''
-spec inflate(binary(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
inflate(_Data, Raw, Max) when Raw > Max ->
    {error, {too_large, Raw, Max}};
inflate(Data, Raw, Max) -> bounded(Data, Raw, Max, ?GZIP_WINDOW_BITS).

%% @doc As `inflate/3', for a zlib stream (RFC 1950, what `zlib:compress/1'
%% writes): packed user metadata (docs/format.md section 2).
%%
%% ```
%% {ok, <<"abc">>} = tether_gzip:inflate_zlib(zlib:compress(<<"abc">>), 3, 100).
%% '''
-spec inflate_zlib(binary(), non_neg_integer(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
inflate_zlib(Data, Raw, Max) -> bounded(Data, Raw, Max, ?ZLIB_WINDOW_BITS).

bounded(_Data, Raw, Max, _Bits) when Raw > Max ->
    {error, {too_large, Raw, Max}};
bounded(Data, Raw, Max, Bits) when not is_binary(Data) ->
    try iolist_to_binary(Data) of
        Bin -> bounded(Bin, Raw, Max, Bits)
    catch
        error:badarg -> {error, {bad_gzip, not_iodata}}
    end;
bounded(Data, Raw, _Max, Bits) ->
    Z = zlib:open(),
    try
        ok = zlib:inflateInit(Z, Bits),
        case loop(Z, zlib:safeInflate(Z, Data), <<>>, Raw) of
            {ok, Out} -> ends_here(Bits, Data, Out);
            Error -> Error
        end
    catch
        error:Reason -> {error, {bad_gzip, Reason}}
    after
        zlib:close(Z)
    end.

%% Appending to the accumulator reuses its spare room (the emulator grows a
%% binary appended to in place), so the output is not copied at the end.
loop(Z, {continue, Chunk}, Acc, Raw) ->
    Out = <<Acc/binary, (iolist_to_binary(Chunk))/binary>>,
    case byte_size(Out) > Raw of
        true -> {error, {decompressed_size_mismatch, Raw, {more_than, Raw}}};
        false -> loop(Z, zlib:safeInflate(Z, []), Out, Raw)
    end;
loop(Z, {finished, Chunk}, Acc, Raw) ->
    Out = <<Acc/binary, (iolist_to_binary(Chunk))/binary>>,
    ok = zlib:inflateEnd(Z),
    case byte_size(Out) of
        Raw -> {ok, Out};
        Got -> {error, {decompressed_size_mismatch, Raw, Got}}
    end.

%% zlib stops at the end of the stream and ignores any bytes after it (the
%% Erlang API does not say how much input it used), where Python refuses
%% them. The stream's own trailer must be the input's last bytes: gzip's
%% CRC-32 and ISIZE (the length mod 2^32), little-endian, or a zlib stream's
%% Adler-32, big-endian. So a second gzip member after the first is caught
%% (its trailer is another's); only bytes that end exactly like this trailer
%% are not, and the output is right then all the same. The CRC-32 costs a
%% pass over the output at about 6 GB/s, a sixth of inflating it.
ends_here(?GZIP_WINDOW_BITS, Data, Out) when byte_size(Data) >= 8 ->
    Trailer = <<(erlang:crc32(Out)):32/little, (byte_size(Out) band 16#FFFFFFFF):32/little>>,
    case binary:part(Data, byte_size(Data) - 8, 8) of
        Trailer -> {ok, Out};
        _ -> {error, {bad_gzip, trailing_bytes}}
    end;
ends_here(?ZLIB_WINDOW_BITS, Data, Out) when byte_size(Data) >= 4 ->
    Sum = erlang:adler32(Out),
    case binary:part(Data, byte_size(Data) - 4, 4) of
        <<Sum:32/big>> -> {ok, Out};
        _ -> {error, {bad_gzip, trailing_bytes}}
    end;
ends_here(_, _, _) -> {error, {bad_gzip, trailing_bytes}}.
