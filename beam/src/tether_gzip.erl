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
bounded(Data, Raw, _Max, Bits) ->
    Z = zlib:open(),
    try
        ok = zlib:inflateInit(Z, Bits),
        loop(Z, zlib:safeInflate(Z, Data), <<>>, Raw)
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
    ok = zlib:inflateEnd(Z),  % data_error when bytes follow the gzip member
    case byte_size(Out) of
        Raw -> {ok, Out};
        Got -> {error, {decompressed_size_mismatch, Raw, Got}}
    end.
