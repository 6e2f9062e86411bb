defmodule TetherErlangAppTest do
  # An Erlang project takes tether as a rebar3 checkout dependency (_checkouts/tether):
  # rebar3 compiles src/ with rebar.config and makes ebin/tether.app from
  # src/tether.app.src. rebar3 is not installed here, so this builds the same
  # way by hand: erlc with rebar.config's options, the .app with its modules
  # filled in. Then a node with no Elixir starts the application and calls a
  # real Python worker and pool through it.
  use ExUnit.Case, async: false

  @beam Path.expand("..", __DIR__)

  defp app_src do
    {:ok, [{:application, :tether, props}]} = :file.consult(Path.join(@beam, "src/tether.app.src"))
    props
  end

  test "the application resource names the version, and only OTP applications" do
    props = app_src()
    assert to_string(props[:vsn]) == Mix.Project.config()[:version]
    # What the Erlang modules need: no elixir, no logger application (logger is kernel's module).
    assert props[:applications] == [:kernel, :stdlib, :crypto]
    assert Enum.sort(Application.spec(:tether, :applications) -- [:elixir, :logger]) == Enum.sort(props[:applications])
    {:ok, config} = :file.consult(Path.join(@beam, "rebar.config"))
    assert {:i, ~c"include"} in config[:erl_opts] and config[:deps] == []
  end

  test "built as rebar3 would, the application starts on a node without Elixir and runs a worker and a pool" do
    dir = Tether.TestPython.tmp_dir!()
    ebin = Path.join(dir, "tether/ebin")
    File.mkdir_p!(ebin)
    sources = Path.wildcard(Path.join(@beam, "src/*.erl"))
    {_, 0} = System.cmd("erlc", ["-Werror", "-I", Path.join(@beam, "include"), "-o", ebin | sources], stderr_to_stdout: true)
    modules = for s <- sources, do: s |> Path.basename(".erl") |> String.to_atom()
    app = {:application, :tether, Keyword.put(app_src(), :modules, modules)}
    File.write!(Path.join(ebin, "tether.app"), :io_lib.format(~c"~tp.~n", [app]))

    python = Tether.TestPython.python()
    expr = """
    {ok, Started} = application:ensure_all_started(tether),
    Opts = \#{python => "#{python}", modules => [<<"beam_handlers">>],
             env => [{"PYTHONPATH", "#{Tether.TestPython.pythonpath()}"}]},
    {ok, W} = tether_worker:start(Opts),
    {ok, 3} = tether_worker:call(W, <<"beam_handlers">>, <<"add">>, [1, 2]),
    {ok, P} = tether_pool:start(Opts\#{size => 2}),
    {ok, 7} = tether_pool:call(P, <<"beam_handlers">>, <<"add">>, [3, 4]),
    io:format("~p ~s ~p~n", [Started, maps:get(tether, tether_worker:info(W)), code:which('Elixir.Kernel')]),
    halt().
    """

    {out, status} =
      System.cmd("erl", ["-noshell", "-boot", "start_clean", "-pa", ebin, "-eval", expr], stderr_to_stdout: true,
        env: [{"ERL_LIBS", ""}])

    assert status == 0, out
    assert out =~ "[crypto,tether] #{Mix.Project.config()[:version]} non_existing"
  end
  test "a node that has started no worker reads the atoms Python writes: NaN, infinities, nil and dates" do
    dir = Tether.TestPython.tmp_dir!()
    path = Path.join(dir, "nan.tthr")

    code = """
    import datetime, math, sys, tether
    value = {"loss": math.nan, "low": -math.inf, "none": None, "d": datetime.date(2024, 5, 6)}
    open(sys.argv[1], "wb").write(tether.dumps(value, reader="beam"))
    """

    {_, 0} = System.cmd(Tether.TestPython.python(), ["-c", code, path],
                        env: [{"PYTHONPATH", Tether.TestPython.pythonpath()}], stderr_to_stdout: true)

    # No atom of the frame appears in this expression: a fresh node knows only what its loaded code names.
    expr = """
    {ok, Bin} = file:read_file("#{path}"),
    io:format("~p~n", [tether:decode(Bin)]),
    halt().
    """

    {out, 0} = System.cmd("erl", ["-noshell", "-boot", "start_clean", "-pa", to_string(:code.lib_dir(:tether, :ebin)),
                                  "-eval", expr], stderr_to_stdout: true, env: [{"ERL_LIBS", ""}])

    assert out =~ ~s(<<"loss">> => nan)
    assert out =~ ~s(<<"low">> => neg_infinity)
    assert out =~ ~s(<<"none">> => nil)
    assert out =~ ~r/'__struct__' => 'Elixir.Date'/
  end
end
