%% @doc gzip decompression bounded by the size the frame declares.
-module(tether_gzip).

-export([inflate/2]).

%% zlib's window bits for a gzip wrapper: 15 (the largest window) + 16.
-define(GZIP_WINDOW_BITS, 31).

%% @doc The gzip stream `Data' inflated to exactly `Raw' bytes; inflating
%% stops as soon as the output passes `Raw', so a small frame cannot claim
%% gigabytes.
-spec inflate(binary(), non_neg_integer()) -> {ok, binary()} | {error, term()}.
inflate(Data, Raw) ->
    Z = zlib:open(),
    try
        ok = zlib:inflateInit(Z, ?GZIP_WINDOW_BITS),
        Out = loop(Z, zlib:safeInflate(Z, Data), [], 0, Raw),
        zlib:inflateEnd(Z),
        Out
    catch
        error:Reason -> {error, {bad_gzip, Reason}}
    after
        zlib:close(Z)
    end.

loop(Z, {continue, Chunk}, Acc, N, Raw) ->
    N1 = N + iolist_size(Chunk),
    if N1 > Raw -> {error, {decompressed_too_large, Raw}};
       true -> loop(Z, zlib:safeInflate(Z, []), [Acc, Chunk], N1, Raw)
    end;
loop(_, {finished, Chunk}, Acc, N, Raw) ->
    case N + iolist_size(Chunk) of
        Raw -> {ok, iolist_to_binary([Acc, Chunk])};
        Got -> {error, {decompressed_size_mismatch, Raw, Got}}
    end.
