defmodule Tether.OptionsTest do
  # Options that are not a keyword list raise ArgumentError naming the form, and option errors read
  # as Elixir (`got "x"`) from the Elixir API while the Erlang API keeps Erlang's (`got <<"x">>`).
  # No Python runs here: every check happens before a worker or pool is reached.
  use ExUnit.Case, async: true
  import Bitwise

  doctest Tether.Options

  describe "options must be a keyword list" do
    for {name, fun} <- [
          {"Tether.Worker.start/1", &Tether.Worker.start/1},
          {"Tether.Worker.start_link/1", &Tether.Worker.start_link/1},
          {"Tether.Worker.child_spec/1", &Tether.Worker.child_spec/1},
          {"Tether.Pool.start/1", &Tether.Pool.start/1},
          {"Tether.Pool.start_link/1", &Tether.Pool.start_link/1},
          {"Tether.Pool.child_spec/1", &Tether.Pool.child_spec/1}
        ] do
      test "#{name} refuses a map, a string and nil" do
        for bad <- [%{modules: ["m"]}, "modules", nil] do
          error = assert_raise ArgumentError, fn -> unquote(fun).(bad) end
          assert Exception.message(error) ==
                   "#{unquote(name)} takes its options as a keyword list (e.g. [modules: [\"my_handlers\"]]), " <>
                     "got: #{inspect(bad)}"
        end
      end
    end

    test "a list that is not a keyword list names the entry, in Elixir" do
      assert_raise ArgumentError, "invalid options: expected {Key, Value} pairs, got :oops", fn ->
        Tether.Worker.start([:oops])
      end
    end

    test "call options: a map or a negative timeout raise; so do bad stats and checkout timeouts" do
      for {fun, what} <- [
            {fn -> Tether.Worker.call(self(), "m", "f", [], %{timeout: 5}) end, "%{timeout: 5}"},
            {fn -> Tether.Worker.measure(self(), "m", "f", [], -1) end, "-1"},
            {fn -> Tether.Pool.call(self(), "m", "f", [], %{}) end, "%{}"}
          ] do
        assert_raise ArgumentError, "expected a timeout or a keyword list of call options, got: #{what}", fun
      end

      assert_raise ArgumentError, ~r/stats\/2's timeout must be .*, got: "5"/, fn -> Tether.Worker.stats(self(), "5") end

      assert_raise ArgumentError, ~r/checkout_timeout must be .*, got: :soon/, fn ->
        Tether.Pool.transaction(self(), fn _ -> :ok end, :soon)
      end
    end
  end

  describe "option errors in Elixir's syntax" do
    test "worker and pool options" do
      assert_raise ArgumentError, ~s(invalid option :python: expected a non-empty string, got ""), fn ->
        Tether.Worker.start(python: "", modules: ["m"])
      end

      assert_raise ArgumentError, ~s(invalid option :cd: expected an existing directory, got "/no/such/dir"), fn ->
        Tether.Pool.start(modules: ["m"], cd: "/no/such/dir")
      end

      # The Erlang API keeps Erlang's syntax.
      assert {:error, {:bad_option, :python, "expected a non-empty string, got <<>>"}} =
               :tether_worker.start(python: "", modules: ["m"])
    end

    test "a pool's options given to a worker say where they belong; the pool lists its own" do
      # They were accepted and did nothing (sched_batch:), or named the members' internal form (pin:).
      for {key, value} <- [pin: true, sched_batch: false, size: 2, spinners: 1] do
        assert_raise ArgumentError, ~r/invalid option :#{key}: a Tether.Pool option \(tether_pool\), not a worker's/, fn ->
          Tether.Worker.start([{key, value}, modules: ["m"]])
        end
      end

      # What a pool sets for its members is not a worker's option either, and is not listed.
      for key <- [:async_start, :notify, :load] do
        assert {:error, {:bad_option, ^key, message}} = :tether_worker.start([{key, true}, modules: ["m"]])
        assert message =~ "unknown option" and not (message =~ "async_start")
      end

      # The pool's list of its options names pin and sched_batch (they were left out).
      assert_raise ArgumentError, ~r/unknown option; valid options are: size, max_queue, spinners, pin, sched_batch, python/, fn ->
        Tether.Pool.start(modules: ["m"], sise: 1)
      end

      # Only a worker's options point to the pool: a call's, an encode's or a stream's list their own.
      for {check, opts} <- [{&:tether_options.encode/1, %{python: "x"}}, {&:tether_options.decode/1, [spinners: 5]},
                            {&:tether_options.call(:worker, &1), [timeout: 1, cancel_grace: 5]},
                            {&:tether_options.call(:pool, &1), [size: 5]}] do
        assert {:error, {:bad_option, _, message}} = check.(opts)
        assert message =~ "unknown option; valid options are" and not (message =~ "Tether.Pool option")
      end
    end

    test "call options and call arguments" do
      assert_raise ArgumentError, ~s(invalid option :tables: expected one of arrow, rows, columns, got "rows"), fn ->
        Tether.Worker.call(self(), "m", "f", [], tables: "rows")
      end

      message =
        ~s{invalid option :checkout_timeout: expected a non-negative integer (milliseconds) up to 4294967295 } <>
          ~s{(49 days), or infinity, got "1"}

      assert_raise ArgumentError, message, fn ->
        Tether.Pool.call(self(), "m", "f", [], checkout_timeout: "1")
      end

      # Longer than Erlang's timers take: refused by name here, not a worker_down from deep inside gen_server.
      for {opt, fun} <- [timeout: &Tether.Worker.call(self(), "m", "f", [], &1),
                         checkout_timeout: &Tether.Pool.call(self(), "m", "f", [], &1)] do
        assert_raise ArgumentError, ~r/:#{opt}: expected .* up to 4294967295/, fn -> fun.([{opt, 1 <<< 40}]) end
      end

      assert_raise ArgumentError, ~s(invalid args: expected the call's arguments as a list, got "x"), fn ->
        Tether.Worker.call(self(), "m", "f", "x")
      end

      assert {:error, {:bad_argument, :args, ~s(expected the call's arguments as a list, got <<"x">>)}} =
               :tether_worker.call(self(), "m", "f", "x")
    end

    test "encode metadata: the value and the path's keys" do
      pid = self()
      error = assert_raise ArgumentError, fn -> Tether.encode(1, metadata: %{{1, :a} => [pid]}) end
      assert Exception.message(error) =~ "invalid option :metadata: $[{1, :a}][0] is #{inspect(pid)}: metadata holds"

      assert_raise ArgumentError, ~s(invalid option :step: expected a non-empty binary naming this write, got ""), fn ->
        Tether.encode(1, step: "")
      end
    end

    test "decode and streams answer with the same wording, in their error tuples or raised" do
      frame = Tether.encode(1)
      assert {:error, {:bad_option, :verify, ~s(expected true or false, got "yes")}} = Tether.decode(frame, verify: "yes")
      assert {:error, {:bad_option, :verify, "expected true or false, got <<\"yes\">>"}} = :tether.decode(frame, verify: "yes")

      path = Path.join(System.tmp_dir!(), "tether-opts-#{System.unique_integer([:positive])}.tthr")
      on_exit(fn -> File.rm(path) end)

      assert {:error, {:bad_option, :compression, ~s(expected one of none, gzip, got "lz4")}} =
               Tether.Stream.write([1], path, compression: "lz4")

      assert {:error, {:bad_option, :max_frame, msg}} = Tether.Stream.verify(path, max_frame: "big")
      assert msg =~ ~s(got "big")

      assert_raise ArgumentError, ~r/invalid option :max_frame: .*got "big"/, fn ->
        Tether.Stream.read(path, max_frame: "big") |> Enum.to_list()
      end

      assert_raise ArgumentError, ~s(invalid option :level: expected a gzip level, 0..9, got "9"), fn ->
        Enum.into([1], Tether.Stream.into(path, level: "9"))
      end
    end
  end
end
