%% @doc ETF bytes from outside the node into terms, as {ok, _} or {error, _}.
-module(tether_etf).

-export([decode/2]).

%% @doc `Safe' (for untrusted peers) refuses to create atoms; `false' is for
%% trusted peers such as our own worker.
-spec decode(binary(), boolean()) -> {ok, term()} | {error, {bad_etf, binary()}}.
decode(Bin, true) ->
    try {ok, binary_to_term(Bin, [safe])}
    catch error:_ -> {error, {bad_etf, <<"not valid ETF, or it names atoms this node does not know">>}}
    end;
decode(Bin, false) ->
    try {ok, binary_to_term(Bin)}
    catch error:_ -> {error, {bad_etf, <<"not valid ETF">>}}
    end.
