defmodule Tether.WorkerLifecycleTest.OlderV2 do
  # tests/beam_handlers.py knows test.Older at version 1 only: this node writes version 1 for it.
  use Tether.Type, name: "test.Older", version: 2, oldest_writable: 1
  defstruct a: 0, b: 0

  @impl true
  def downgrade(2, wire), do: Map.delete(wire, :b)
end

defmodule Tether.WorkerLifecycleTest.NegotiatedV1 do
  # The BEAM's side of tests/beam_handlers.py's test.Negotiated: it reads version 1 only,
  # where Python writes version 2; the handshake makes Python write version 1.
  use Tether.Type, name: "test.Negotiated", version: 1
  defstruct x: 0.0
end

defmodule Tether.WorkerLifecycleTest do
  # Against a real `python -m tether.worker` (make test sets TETHER_PYTHON).
  use ExUnit.Case, async: false
  import Tether.TestWait
  import Bitwise
  alias Tether.TestPython

  doctest Tether.Worker
  doctest Tether.Error

  @m "beam_handlers"

  defp start_worker(extra \\ []) do
    {:ok, w} = Tether.Worker.start_link(TestPython.opts(extra))
    on_exit(fn -> TestPython.stop(w) end)
    w
  end

  defp ms(fun) do
    {us, result} = :timer.tc(fun)
    {div(us, 1000), result}
  end

  # The worker's private directory, from its Python's --stats-dir.
  # The first `n` logged exits of a Python that exits with status 5, waiting up to `ms` for them.
  defp exit_logs(n, ms), do: exit_logs([], n, System.monotonic_time(:millisecond) + ms)

  defp exit_logs(acc, n, _deadline) when length(acc) >= n, do: Enum.reverse(acc)

  defp exit_logs(acc, n, deadline) do
    receive do
      {:log_event, %{msg: msg}} ->
        text = msg |> format_msg() |> IO.iodata_to_binary()
        exit_logs(if(text =~ "exited with status 5", do: [text | acc], else: acc), n, deadline)
    after
      max(0, deadline - System.monotonic_time(:millisecond)) -> Enum.reverse(acc)
    end
  end

  defp private_dir(w) do
    argv = File.read!("/proc/#{Tether.Worker.info(w).os_pid}/cmdline") |> String.split(<<0>>)
    Enum.at(argv, Enum.find_index(argv, &(&1 == "--stats-dir")) + 1)
  end

  describe "starting" do
    test "under a supervisor, by name, restarted by name" do
      {:ok, sup} = Supervisor.start_link([{Tether.Worker, TestPython.opts(name: :tether_test_py)}], strategy: :one_for_one)
      on_exit(fn -> TestPython.stop(sup) end)

      assert {:ok, 3} = Tether.Worker.call(:tether_test_py, @m, "add", [1, 2])
      first = Process.whereis(:tether_test_py)
      Process.exit(first, :kill)
      wait_until(fn -> Process.whereis(:tether_test_py) not in [nil, first] end)
      assert {:ok, 5} = Tether.Worker.call(:tether_test_py, @m, "add", [2, 3])
      assert [{:tether_test_py, _, :worker, [Tether.Worker]}] = Supervisor.which_children(sup)
    end

    test "Erlang child specs: two named workers and a pool share a supervisor, each by its name" do
      # The ids were the module names, so a second named worker was a duplicate child.
      opts = fn name -> Map.new(TestPython.opts(name: name)) end
      specs = [:tether_worker.child_spec(opts.(:tether_erl_a)), :tether_worker.child_spec(opts.(:tether_erl_b)),
               :tether_pool.child_spec(Map.put(opts.({:local, :tether_erl_pool}), :size, 1))]
      {:ok, sup} = Supervisor.start_link(specs, strategy: :one_for_one)
      on_exit(fn -> TestPython.stop(sup) end)
      ids = for {id, _, _, _} <- Supervisor.which_children(sup), do: id
      assert Enum.sort(ids) == Enum.sort([:tether_erl_a, :tether_erl_b, {:local, :tether_erl_pool}])
      assert {:ok, 3} = :tether_worker.call(:tether_erl_b, @m, "add", [1, 2])
      assert {:ok, 3} = :tether_pool.call(:tether_erl_pool, @m, "add", [1, 2])
      assert {:error, {:not_a_frame, _}} = :tether.decode([<<"a">> | :b])
    end

    test "an interpreter without tether is named as such, with what to do" do
      # It used to be a bare {:exited_before_ready, 1, stderr}.
      dir = TestPython.tmp_dir!()
      bare = Path.join(dir, "python-without-site")
      File.write!(bare, "#!/bin/sh\nexec #{TestPython.python()} -I -S \"$@\"\n")
      File.chmod!(bare, 0o755)
      assert {:error, {:tether_not_installed, ^bare, stderr} = reason} = Tether.Worker.start(python: bare, modules: [@m])
      assert stderr =~ "No module named 'tether'"
      assert Exception.message(%Tether.Error{reason: reason}) =~ "cannot import tether: install the tether wheel"
    end

    test "an interpreter where tether is found but a dependency of it is not is named as such" do
      dir = TestPython.tmp_dir!()
      File.mkdir_p!(Path.join(dir, "lz4"))
      File.write!(Path.join(dir, "lz4/__init__.py"), "raise ModuleNotFoundError(\"No module named 'lz4'\", name='lz4')\n")
      env = [{"PYTHONPATH", dir <> ":" <> TestPython.pythonpath()}]
      python = TestPython.python()

      assert {:error, {:tether_not_installed, ^python, stderr} = reason} =
               Tether.Worker.start(python: python, modules: [@m], env: env)

      assert stderr =~ "No module named 'lz4'"
      assert Exception.message(%Tether.Error{reason: reason}) =~
               "cannot import tether (it needs lz4, which that environment lacks): install the tether wheel"
    end

    test "the handshake reports both sides" do
      w = start_worker()
      info = Tether.Worker.info(w)
      assert info.tether == :tether_protocol.beam_version()
      assert info.modules == ["beam_handlers"]
      assert info.phase == :ready and is_integer(info.os_pid)
      assert {:ok, info.os_pid} == Tether.Worker.call(w, @m, "os_pid", [])
    end

    test "a python that does not exist fails start_link, and the caller lives on" do
      assert {:error, {:python_not_found, "/nonexistent/bin/python3"}} =
               Tether.Worker.start_link(TestPython.opts(python: "/nonexistent/bin/python3"))
    end

    test "a python path that is not an executable file says what it is" do
      dir = TestPython.tmp_dir!()
      copy = Path.join(dir, "python3")
      File.write!(copy, "#!/bin/sh\n")
      File.chmod!(copy, 0o644)
      assert {:error, {:python_not_executable, ^copy, :not_executable}} =
               Tether.Worker.start_link(TestPython.opts(python: copy))
      assert {:error, {:python_not_executable, ^dir, :directory}} =
               Tether.Pool.start_link(TestPython.opts(python: dir, size: 1))
    end

    test "an ImportError fails start_link with its traceback" do
      dir = TestPython.tmp_dir!()
      File.write!(Path.join(dir, "broken_handlers.py"), "import numpy\nimport tether_no_such_dependency\n")
      env = [{"PYTHONPATH", TestPython.pythonpath([dir])}]

      assert {:error, {:import_error, "broken_handlers", "ModuleNotFoundError", message, traceback}} =
               Tether.Worker.start_link(TestPython.opts(modules: ["broken_handlers"], env: env))

      assert message =~ "tether_no_such_dependency"
      # A dependency of the module is missing, not the module: no advice about where it is.
      refute message =~ "PYTHONPATH"
      assert traceback =~ "Traceback" and traceback =~ "broken_handlers.py"
    end

    test "a Python that dies before it is ready fails start_link with its stderr" do
      dir = TestPython.tmp_dir!()
      File.write!(Path.join(dir, "dying_handlers.py"), """
      import os, sys
      sys.stderr.write("cannot open the model file\\n")
      sys.stderr.flush()
      os._exit(7)
      """)

      env = [{"PYTHONPATH", TestPython.pythonpath([dir])}]

      assert {:error, {:exited_before_ready, 7, stderr}} =
               Tether.Worker.start_link(TestPython.opts(modules: ["dying_handlers"], env: env))

      assert stderr =~ "cannot open the model file"
    end

    test "a module that fails to import: its error quotes what the modules logged and printed first" do
      dir = TestPython.tmp_dir!()
      File.write!(Path.join(dir, "broken_model.py"), """
      import logging
      logging.getLogger("broken_model").warning("loading weights from /models/x.bin")
      print("GPU not found")
      raise RuntimeError("model file missing")
      """)
      env = [{"PYTHONPATH", TestPython.pythonpath([dir])}]
      assert {:error, {:import_error, "broken_model", "RuntimeError", "model file missing", tb}} =
               Tether.Worker.start_link(TestPython.opts(modules: ["broken_model"], env: env))
      assert tb =~ "RuntimeError: model file missing"
      assert tb =~ "loading weights from /models/x.bin"
      assert tb =~ "GPU not found"
    end

    test "a Python that dies while importing still shows what the modules logged before it died" do
      assert {:error, {:exited_before_ready, 3, stderr}} = Tether.Worker.start_link(TestPython.opts(modules: ["early_crash"]))
      assert stderr =~ "WARNING:early_crash:CUDA not found, falling back to CPU"
    end

    test "bad options raise ArgumentError naming the option" do
      assert_raise ArgumentError, ~r/invalid option :pyhton: unknown option; valid options are: python, modules/, fn ->
        Tether.Worker.start_link(pyhton: "python3", modules: ["m"])
      end

      assert_raise ArgumentError, ~r/invalid option :modules: is required/, fn -> Tether.Worker.start_link([]) end

      assert_raise ArgumentError, ~r/:start_timeout: expected a non-negative integer/, fn ->
        Tether.Worker.start_link(TestPython.opts(start_timeout: -1))
      end

      assert {:error, {:bad_option, :binaries, _}} = :tether_worker.start_link(%{modules: ["m"], binaries: :utf16})

      # System.get_env/1 of an unset variable is nil: refused, never the text "nil"
      assert_raise ArgumentError, ~r/invalid option :env: .*nil value/, fn ->
        Tether.Worker.start(TestPython.opts(env: [{"PYTHONPATH", nil}]))
      end

      for key <- [:cd, :shm_dir] do
        assert_raise ArgumentError, ~r/invalid option #{inspect(key)}: expected an existing directory/, fn ->
          Tether.Worker.start(TestPython.opts([{key, "/no/such/tether/dir"}]))
        end
      end
    end

    test "heavy imports count against start_timeout, not the first call" do
      assert {:error, {:start_timeout, 1, _stderr}} = Tether.Worker.start_link(TestPython.opts(start_timeout: 1))
      w = start_worker()
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2], 200)
    end
  end

  describe "negotiation" do
    test "user types come back at the version this node reads, named in the hello" do
      alias Tether.WorkerLifecycleTest.NegotiatedV1
      w = start_worker()
      # Unregistered here: the value arrives at Python's own version, as the wire struct.
      assert {:ok, %{"point" => %Tether.Type{name: "test.Negotiated", version: 2, value: %{x: 1.5, y: 2.0}}}} =
               Tether.Worker.call(w, @m, "negotiated", [1.5, 2.0])

      :ok = Tether.Type.register(NegotiatedV1)
      on_exit(fn -> Tether.Type.unregister(NegotiatedV1) end)
      w1 = start_worker()
      assert {:ok, %{"point" => %NegotiatedV1{x: 1.5}, "many" => [%NegotiatedV1{x: 1.5}]}} =
               Tether.Worker.call(w1, @m, "negotiated", [1.5, 2.0])
      # In a set, as a map key and inside another type's value too (only the outermost was, before).
      assert {:ok, %{"set" => set, "keyed" => keyed, "pair" => %Tether.Type{name: "test.Pair", value: pair}}} =
               Tether.Worker.call(w1, @m, "negotiated_everywhere", [1.5, 2.0])
      assert set == MapSet.new([%NegotiatedV1{x: 1.5}]) and keyed == %{%NegotiatedV1{x: 1.5} => "k"}
      assert pair == %{a: %NegotiatedV1{x: 1.5}, b: nil}
    end
    test "arguments go at the version the worker reads, inline and through shared memory" do
      alias Tether.WorkerLifecycleTest.OlderV2
      :ok = Tether.Type.register(OlderV2)
      on_exit(fn -> Tether.Type.unregister(OlderV2) end)
      w = start_worker(shm_threshold: 10_000)
      expected = %{"type" => "Older", "a" => 5}
      assert {:ok, %{"padding" => 0} = got} = Tether.Worker.call(w, @m, "older_fields", [%OlderV2{a: 5, b: 6}])
      assert Map.take(got, ["type", "a"]) == expected
      big = :binary.copy(<<1>>, 100_000)
      assert {:ok, %{"padding" => 100_000} = got} = Tether.Worker.call(w, @m, "older_fields", [%OlderV2{a: 5, b: 6}, big])
      assert Map.take(got, ["type", "a"]) == expected
    end
  end

  describe "cancelling" do
    test "a deadline that passes while a large reply is read gives :timeout and keeps Python" do
      # The region's read used to be given what was left of the deadline, 0 once it had passed, and a read
      # cut short killed Python as if a lease held the region: 3-5 of 16 such calls restarted it.
      # The reply leaves Python at about 300 ms and its read takes tens of ms: the deadlines land before,
      # during and after the read.
      w = start_worker()
      n = 150_000_000
      {:ok, _} = Tether.Worker.call(w, @m, "zeros_after", [0, n], 60_000)
      pid = Tether.Worker.info(w).os_pid

      for timeout <- 300..420//8 do
        result = Tether.Worker.call(w, @m, "zeros_after", [0.3, n], timeout)
        assert match?({:ok, _}, result) or result == {:error, :timeout}
        :erlang.garbage_collect()
        assert Tether.Worker.info(w).os_pid == pid, "Python was killed at a timeout of #{timeout} ms"
      end
    end

    test "a call past its deadline is cancelled in Python; the next call is not delayed" do
      w = start_worker()
      pid = Tether.Worker.info(w).os_pid
      {t, result} = ms(fn -> Tether.Worker.call(w, @m, "sleep", [5], 300) end)
      assert result == {:error, :timeout}
      assert t >= 290 and t < 600
      {t2, result2} = ms(fn -> Tether.Worker.call(w, @m, "add", [1, 2]) end)
      assert result2 == {:ok, 3}
      assert t2 < 300, "the next call took #{t2} ms"
      # SIGUSR1 stopped the handler: the same Python answers.
      assert Tether.Worker.info(w).os_pid == pid
    end

    test "the cancel names its call in the private directory before the signal" do
      w = start_worker()
      %{os_pid: os_pid} = Tether.Worker.info(w)
      dir = private_dir(w)
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
      refute File.exists?(Path.join(dir, "cancel"))
      assert {:error, :timeout} = Tether.Worker.call(w, @m, "sleep", [5], 200)
      # The caller's cancel reached the worker before this (same sender): the file is written.
      assert %{phase: _} = Tether.Worker.info(w)
      # The second call of this worker: Python stops that call only (a late signal touches no other).
      assert File.read!(Path.join(dir, "cancel")) == "2"
      # 0600 as every file there (the directory is 0700 too).
      assert (File.stat!(Path.join(dir, "cancel")).mode &&& 0o777) == 0o600
      assert {:ok, 0.05} = Tether.Worker.call(w, @m, "sleep", [0.05])
      assert Tether.Worker.info(w).os_pid == os_pid
    end

    test "a Python that ignores the cancel is killed after cancel_grace and replaced" do
      w = start_worker(cancel_grace: 200)
      pid = Tether.Worker.info(w).os_pid
      assert {:error, :timeout} = Tether.Worker.call(w, @m, "sleep_ignoring_cancel", [30], 200)
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2], 30_000)
      new_pid = Tether.Worker.info(w).os_pid
      assert new_pid != pid
      wait_until(fn -> gone?(pid) end)
    end

    test "queued calls whose caller died or gave up are dropped, not run" do
      dir = TestPython.tmp_dir!()
      w = start_worker()
      busy = Task.async(fn -> Tether.Worker.call(w, @m, "sleep", [0.6], 5000) end)
      Process.sleep(50)

      dead = Path.join(dir, "dead_caller")
      gave_up = Path.join(dir, "gave_up")
      {pid, ref} = spawn_monitor(fn -> Tether.Worker.call(w, @m, "touch", [dead], 5000) end)
      # queued, not merely sent: a fixed sleep let a slow box kill the caller before its call arrived
      wait_until(fn -> Tether.Worker.info(w).queued == 1 end)
      Process.exit(pid, :kill)
      assert_receive {:DOWN, ^ref, :process, ^pid, :killed}
      assert {:error, :timeout} = Tether.Worker.call(w, @m, "touch", [gave_up], 100)

      assert {:ok, 0.6} = Task.await(busy)
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
      refute File.exists?(dead)
      refute File.exists?(gave_up)
      # the control: the same call from a live caller does run
      assert {:ok, _} = Tether.Worker.call(w, @m, "touch", [dead])
      assert File.exists?(dead)
    end
  end

  describe "values" do
    setup do
      [w: start_worker()]
    end

    test "arrays nested in maps and tuples arrive as tensor maps", %{w: w} do
      assert {:ok, %{"emb" => emb, "ids" => [1, 2, 3], "pair" => {ints, floats}}} =
               Tether.Worker.call(w, @m, "nested_arrays", [])

      assert %{type: {:f, 32}, shape: {3, 4}, order: "C"} = emb
      assert emb.data == for(i <- 0..11, into: <<>>, do: <<i * 1.0::float-32-little>>)
      assert %{type: {:s, 64}, shape: {2}, data: <<1::64-little, 2::64-little>>} = ints
      assert %{type: {:f, 64}, shape: {1}, data: <<0.5::float-64-little>>} = floats
    end

    test "a transposed array arrives in row-major order with the same values", %{w: w} do
      # numpy: arange(6).reshape(2, 3).T == [[0, 3], [1, 4], [2, 5]]
      assert {:ok, t} = Tether.Worker.call(w, @m, "transposed", [])
      assert %{type: {:f, 32}, shape: {3, 2}, order: "C"} = t
      assert t.data == for(v <- [0, 3, 1, 4, 2, 5], into: <<>>, do: <<v * 1.0::float-32-little>>)
    end

    test "a byte-swapped array arrives native-endian, with its Nx type", %{w: w} do
      # It used to arrive with type: :undefined and big-endian bytes, so Nx.from_binary read garbage.
      assert {:ok, {a, b}} = Tether.Worker.call(w, @m, "byte_swapped", [])
      assert %{type: {:f, 32}, shape: {3}, dtype: "<f4"} = a
      assert a.data == <<0.0::float-32-native, 1.0::float-32-native, 2.0::float-32-native>>
      assert %{type: {:s, 64}, shape: {3, 2}} = b
      assert b.data == for(v <- [0, 3, 1, 4, 2, 5], into: <<>>, do: <<v::signed-64-native>>)
    end

    test "tables come back as Arrow IPC bytes, rows or columns", %{w: w} do
      assert {:ok, <<0xFF, 0xFF, 0xFF, 0xFF, _::binary>>} = Tether.Worker.call(w, @m, "table", [2])

      assert {:ok, [%{"id" => 0, "name" => "r0"}, %{"id" => 1, "name" => "r1"}]} =
               Tether.Worker.call(w, @m, "table", [2], tables: :rows)

      assert {:ok, %{"id" => [0, 1], "name" => ["r0", "r1"]}} =
               Tether.Worker.call(w, @m, "table", [2], tables: :columns)

      assert_raise ArgumentError, ~r/:tables: expected one of arrow, rows, columns/, fn ->
        Tether.Worker.call(w, @m, "table", [2], tables: :csv)
      end
    end

    test "a pandas Series comes back as a table of one column", %{w: w} do
      assert {:ok, <<0xFF, 0xFF, 0xFF, 0xFF, _::binary>>} = Tether.Worker.call(w, @m, "series", [2])
      assert {:ok, %{"score" => [0.0, 0.5]}} = Tether.Worker.call(w, @m, "series", [2], tables: :columns)
      assert {:ok, [%{"score" => 0.0}, %{"score" => 0.5}]} = Tether.Worker.call(w, @m, "series", [2], tables: :rows)
    end

    test "a result with no BEAM form is an EncodeError whose advice a handler can follow", %{w: w} do
      for {kind, words} <- [{"timedelta", "return something that maps (docs/types.md): the BEAM reads no pickle"},
                            {"nan_key", "A NaN or infinite map key has no BEAM form"}] do
        assert {:error, {:python, "EncodeError", message, _}} = Tether.Worker.call(w, @m, "unmapped", [kind])
        assert message =~ words
        refute message =~ "format='pickle'" or message =~ "options={"
      end
    end

    test "Tether.table/1 arguments arrive as pyarrow Tables", %{w: w} do
      rows = [%{"id" => 1, "name" => "a"}, %{"id" => 2, "name" => "b"}]
      assert {:ok, {"Table", 2, ["id", "name"]}} = Tether.Worker.call(w, @m, "table_info", [Tether.table(rows)])

      assert {:ok, {"Table", 3, ["x"]}} =
               Tether.Worker.call(w, @m, "table_info", [Tether.table(%{"x" => [1.0, 2.0, 3.0]})])

      assert_raise ArgumentError, fn -> Tether.table([1, 2]) end
      assert_raise ArgumentError, ~r/equal-length/, fn -> Tether.table(%{"a" => [1, 2], "b" => [1]}) end
    end

    test "NaN and infinities in a Tether.table/1 column arrive as floats", %{w: w} do
      # A mixed column was refused ("holds Atom, float"), and one of atoms alone arrived as strings.
      mixed = Tether.table([%{"a" => 1.0}, %{"a" => :nan}, %{"a" => nil}])
      assert {:ok, %{"a" => [1.0, :nan, nil]}} = Tether.Worker.call(w, @m, "echo", [mixed], tables: :columns)
      only = Tether.table(%{"a" => [:nan, :infinity, :neg_infinity], "b" => [:x, :y, :x]})
      assert {:ok, %{"a" => [:nan, :infinity, :neg_infinity], "b" => ["x", "y", "x"]}} =
               Tether.Worker.call(w, @m, "echo", [only], tables: :columns)
      # Inside a struct column too: wherever they stand, as in any other argument.
      nested = Tether.table([%{"s" => %{"x" => :nan}}, %{"s" => %{"x" => 1.0}}])
      assert {:ok, %{"s" => [%{"x" => :nan}, %{"x" => 1.0}]}} =
               Tether.Worker.call(w, @m, "echo", [nested], tables: :columns)

      # A column Arrow cannot hold: the call says which argument, and Tether.Error says what the tag means.
      mixed_kinds = Tether.table([%{"a" => 1}, %{"a" => "x"}])
      assert {:error, {:bad_request, message} = reason} = Tether.Worker.call(w, @m, "echo", [1, mixed_kinds])
      assert message =~ "$[1]" and message =~ "Column 'a'"
      assert Exception.message(%Tether.Error{reason: reason}) =~ "the request was refused before it ran"
    end

    test "NaN and infinities travel as atoms, both ways", %{w: w} do
      assert {:ok, [:nan, :infinity, :neg_infinity, 1.5]} = Tether.Worker.call(w, @m, "non_finite", [])
      assert {:ok, true} = Tether.Worker.call(w, @m, "is_nan", [:nan])
    end

    test "complex numbers are %Complex{} (Nx's complex package), both ways", %{w: w} do
      # The complex package is not a dependency here: its struct's atoms are made the way loading it would.
      [_, _] = [Complex, :im]
      z = %{__struct__: Complex, re: 1.5, im: -2.0}
      assert {:ok, ["complex", %{__struct__: Complex, re: 3.0, im: -4.0}, %{__struct__: Complex, re: :infinity, im: :nan}]} =
               Tether.Worker.call(w, @m, "complex_twice", [z])
    end

    test "async def handlers are awaited", %{w: w} do
      assert {:ok, 5} = Tether.Worker.call(w, @m, "async_add", [2, 3])
    end

    test "a result Python cannot encode is an EncodeError", %{w: w} do
      assert {:error, {:python, "EncodeError", message, _tb}} = Tether.Worker.call(w, @m, "unencodable", [])
      assert is_binary(message)
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
    end

    test "call! returns the value or raises Tether.Error", %{w: w} do
      assert 3 == Tether.Worker.call!(w, @m, "add", [1, 2])
      assert_raise Tether.Error, ~r/Python raised ValueError: boom/, fn -> Tether.Worker.call!(w, @m, "fail", ["boom"]) end
    end
  end

  describe "safety" do
    test "an shm_dir whose name is not Latin-1 carries large arguments" do
      # list_to_binary of the arguments file's path raised in the worker, outside its try: the worker died.
      dir = Path.join(TestPython.tmp_dir!(), "数据")
      File.mkdir_p!(dir)
      w = start_worker(shm_dir: dir)
      big = :binary.copy(<<7>>, 2_000_000)
      assert {:ok, ^big} = Tether.Worker.call(w, @m, "echo", [big], 10_000)
    end

    test "a fun among the arguments is refused before it is sent, inline or through shared memory" do
      # It reached Python as a tether.OpaqueTerm, where the handler failed on it (an Elixir user's trial).
      w = start_worker()
      pid = Tether.Worker.info(w).os_pid
      assert {:error, :funs_refused} = Tether.Worker.call(w, @m, "echo", [fn -> 1 end])
      assert {:error, :funs_refused} = Tether.Worker.call(w, @m, "echo", [%{f: &Enum.map/2}])
      big = %{data: :binary.copy(<<7>>, 2_000_000), deep: [{:ok, [fn x -> x end]}]}
      assert {:error, :funs_refused} = Tether.Worker.call(w, @m, "echo", [big], 10_000)
      assert_raise Tether.Error, ~r/a function \(fun\) cannot be sent to Python/, fn ->
        Tether.Worker.call!(w, @m, "echo", [fn -> 1 end])
      end
      # Bytes that look like a fun's tag are not one; the worker carries on with the same Python.
      assert {:ok, "pqp"} = Tether.Worker.call(w, @m, "echo", ["pqp"])
      assert {:ok, %{"data" => data}} = Tether.Worker.call(w, @m, "echo", [%{"data" => :binary.copy("p", 2_000_000)}], 10_000)
      assert byte_size(data) == 2_000_000
      assert Tether.Worker.info(w).os_pid == pid
    end

    test "a reply of 100,000 unknown atoms is an error and creates no atom" do
      w = start_worker()
      prefix = "tether_unknown_#{System.unique_integer([:positive])}_#{:erlang.phash2(make_ref())}_"
      # Once first: the code that names the atom makes its own atoms as it loads.
      assert {:error, {:bad_etf, _}} = Tether.Worker.call(w, @m, "many_atoms", [100_000, prefix <> "warm_"], 60_000)
      before = :erlang.system_info(:atom_count)
      assert {:error, {:bad_etf, why}} = Tether.Worker.call(w, @m, "many_atoms", [100_000, prefix], 60_000)
      # Named, and found without making one either.
      assert why =~ "the atom '#{prefix}0' at $[0] is not known to this node"
      assert :erlang.system_info(:atom_count) == before
      assert_raise ArgumentError, fn -> String.to_existing_atom(prefix <> "0") end
      # the worker carries on
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
    end

    test "an unknown atom in a small reply is named from the result, with advice for the handler" do
      w = start_worker()
      prefix = "tether_unknown_small_#{System.unique_integer([:positive])}_"
      # Through the pipe, as through shared memory: $[0] of the result, not $[2][1][0] of the message around it.
      assert {:error, {:bad_etf, why}} = Tether.Worker.call(w, @m, "many_atoms", [1, prefix])
      assert why =~ "the atom '#{prefix}0' at $[0] is not known to this node"
      assert why =~ "have the handler return it as a str instead of a tether.Atom"
      refute why =~ "safe: false"
    end

    test "a reply reads only this worker's own regions, each byte of them once" do
      w = start_worker()
      # Naming one region a thousand times made the node read (and hold) it a thousand times: 927 MB for 1 MB.
      assert {:ok, [blob]} = Tether.Worker.call(w, @m, "region_refs", [1])
      assert byte_size(blob) == 100_000
      assert {:error, {:embedded_shm, _, {:reads_past_region, _, _}}} =
               Tether.Worker.call(w, @m, "region_refs", [1000])
      # Another worker's arguments file, a tether- name outside this worker's directory, was read and returned.
      other = start_worker(shm_threshold: 1024)
      assert {:ok, _} = Tether.Worker.call(other, @m, "echo", [:binary.copy("s", 5000)])
      [args] = Path.wildcard(private_dir(other) <> "/tether-args-*")
      assert {:error, {:refused_shm_path, ^args}} = Tether.Worker.call(w, @m, "region_refs", [1, args])
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
    end

    test "a region Python holds a lease on is given up at the call's deadline, and Python replaced" do
      # open(2) of it waited 45 s in the worker process (and a dirty I/O scheduler): ten such workers
      # stalled every file read on the node.
      w = start_worker()
      {t, result} = ms(fn -> Tether.Worker.call(w, @m, "leased_region", [], 500) end)
      assert result == {:error, :timeout} and t < 2000, "#{inspect(result)} after #{t} ms"
      wait_until(fn -> Tether.Worker.info(w).phase == :ready end, 10_000)
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
    end

    test "large arguments go through a 0600 file in a private 0700 directory" do
      w = start_worker(shm_threshold: 1000)
      big = :crypto.strong_rand_bytes(200_000)
      assert {:ok, ^big} = Tether.Worker.call(w, @m, "echo", [big])
      [file] = Path.wildcard("/dev/shm/tether-#{System.pid()}-*/tether-args-*")
      assert Path.basename(file) =~ ~r/^tether-args-[0-9a-f]{32}$/
      assert (File.stat!(Path.dirname(file)).mode &&& 0o777) == 0o700
      assert (File.stat!(file).mode &&& 0o777) == 0o600
      Tether.Worker.stop(w)
      refute File.exists?(Path.dirname(file))
    end

    test "shm_keep: the arguments file goes after a quiet spell, Python lets go of it, and the next call makes one" do
      w = start_worker(shm_threshold: 1000, shm_keep: 1500)
      big = :crypto.strong_rand_bytes(200_000)
      assert {:ok, ^big} = Tether.Worker.call(w, @m, "echo", [big])
      [file] = Path.wildcard("/dev/shm/tether-#{System.pid()}-*/tether-args-*")
      assert %{args_file_bytes: size} = Tether.Worker.info(w)
      assert size > 200_000 and File.stat!(file).size == size
      # Calls that keep using the file keep it, however long the worker has lived: 4 x 500 ms > 1,500.
      for _ <- 1..4 do
        Process.sleep(500)
        assert {:ok, ^big} = Tether.Worker.call(w, @m, "echo", [big])
      end
      assert File.exists?(file)
      wait_until(fn -> Tether.Worker.info(w).args_file_bytes == 0 end, 200)
      refute File.exists?(file)
      assert {:ok, %{"worker" => %{"args_mapped_bytes" => 0}}} = Tether.Worker.stats(w)
      assert {:ok, ^big} = Tether.Worker.call(w, @m, "echo", [big])
      [again] = Path.wildcard("/dev/shm/tether-#{System.pid()}-*/tether-args-*")
      assert again != file
      assert {:ok, %{"worker" => %{"args_mapped_bytes" => mapped}}} = Tether.Worker.stats(w)
      assert mapped == Tether.Worker.info(w).args_file_bytes
    end

    test "an arguments file that cannot be written whole gives its space back" do
      # An 8 MiB tmpfs as shm_dir: a 12 MB argument fills it part way through the write.
      dir = TestPython.tmp_dir!()
      case System.cmd("mount", ["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", dir], stderr_to_stdout: true) do
        {_, 0} ->
          on_exit(fn -> System.cmd("umount", ["-l", dir]) end)
          w = start_worker(shm_dir: dir, shm_keep: :infinity)
          big = :binary.copy(<<7>>, 12_000_000)
          assert {:error, {:args_file, _path, :enospc}} = Tether.Worker.call(w, @m, "echo", [big])
          assert Tether.Worker.info(w).args_file_bytes == 0
          assert Path.wildcard(Path.join(dir, "*/tether-args-*")) == []
          # The space is back: a 2 MB argument fits, and its reply's region is in the worker's directory too.
          fits = :binary.copy(<<8>>, 2_000_000)
          assert {:ok, ^fits} = Tether.Worker.call(w, @m, "echo", [fits])
          %{os_pid: os_pid} = Tether.Worker.info(w)
          assert [_region] = Path.wildcard(Path.join(dir, "*/tether-#{os_pid}-*"))
          # A reply with no room left there goes through the pipe, logged, instead of killing Python (SIGBUS).
          log = ExUnit.CaptureLog.capture_log(fn ->
            assert {:ok, big} = Tether.Worker.call(w, @m, "big_binary", [7_000_000])
            assert byte_size(big) == 7_000_000
          end)
          assert log =~ "frame of this reply went through the pipe" and log =~ "has no room for"
          assert Tether.Worker.info(w).os_pid == os_pid
        {out, _} ->
          IO.puts("skipped: cannot mount a tmpfs here (#{String.trim(out)})")
      end
    end

    test "shm_keep: a large result's regions go after the quiet spell too, with no large arguments at all" do
      w = start_worker(shm_keep: 1000)
      assert {:ok, big} = Tether.Worker.call(w, @m, "big_binary", [4_000_000])
      assert byte_size(big) == 4_000_000
      %{os_pid: os_pid} = Tether.Worker.info(w)
      dir = private_dir(w)
      regions = fn -> Path.wildcard(Path.join(dir, "tether-#{os_pid}-*")) |> Enum.filter(&File.regular?/1) end
      assert regions.() != []
      wait_until(fn -> regions.() == [] end, 200)
      assert {:ok, %{"memory" => %{"regions" => %{"live" => 0}}}} = Tether.Worker.stats(w)
      assert {:ok, ^big} = Tether.Worker.call(w, @m, "big_binary", [4_000_000])
    end

    test "a worker killed outright leaves no private directory behind: the node's keeper removes it" do
      {:ok, w} = Tether.Worker.start(TestPython.opts(shm_threshold: 1000, shm_keep: :infinity))
      %{os_pid: os_pid} = Tether.Worker.info(w)
      assert {:ok, _} = Tether.Worker.call(w, @m, "echo", [:binary.copy(<<3>>, 500_000)])
      dir = private_dir(w)
      assert [_] = Path.wildcard(Path.join(dir, "tether-args-*"))
      Process.exit(w, :kill)  # no terminate: the worker cannot clean up after itself
      wait_until(fn -> not File.exists?(dir) end)
      # Python saw its port close and exited.
      wait_until(fn -> not File.exists?("/proc/#{os_pid}") end)
    end

    test "a Python busy when its worker was killed is killed too; one exiting as usual keeps its atexit time" do
      {:ok, w} = Tether.Worker.start(TestPython.opts())
      %{os_pid: busy_pid} = Tether.Worker.info(w)
      spawn(fn -> Tether.Worker.call(w, @m, "sleep", [30], 60_000) end)
      wait_until(fn -> Tether.Worker.info(w).running != nil end)
      Process.exit(w, :kill)
      # Its port closed, but Python reads it only after the handler: 30 s, without the keeper.
      wait_until(fn -> not File.exists?("/proc/#{busy_pid}") end, 100)

      # A worker stopped as usual: its idle Python exits by itself, after 1.5 s of atexit work.
      dir = TestPython.tmp_dir!()
      marker = Path.join(dir, "atexit_done")
      File.write!(Path.join(dir, "slow_exit.py"), """
      import atexit, time
      def _flush():
          time.sleep(1.5)  # a last metrics upload, a checkpoint
          open(#{inspect(marker)}, "w").write("done")
      atexit.register(_flush)
      def ping():
          return 1
      """)
      {:ok, w2} = Tether.Worker.start(TestPython.opts(modules: ["slow_exit"], env: [{"PYTHONPATH", TestPython.pythonpath([dir])}]))
      assert {:ok, 1} = Tether.Worker.call(w2, "slow_exit", "ping", [])
      os_pid = Tether.Worker.info(w2).os_pid
      :ok = Tether.Worker.stop(w2)
      wait_until(fn -> not File.exists?("/proc/#{os_pid}") end, 200)
      assert File.read!(marker) == "done"
    end

    test "a node killed outright takes its Python with it, even one busy in a handler" do
      ebin = Path.dirname(:code.which(:tether_worker))
      expr = """
      {ok, W} = tether_worker:start(\#{python => "#{TestPython.python()}", modules => [<<"beam_handlers">>],
                                       env => [{"PYTHONPATH", "#{TestPython.pythonpath()}"}]}),
      spawn(fun() -> tether_worker:call(W, <<"beam_handlers">>, <<"sleep">>, [60], 120000) end),
      timer:sleep(300),
      io:format("pids ~s ~p~n", [os:getpid(), maps:get(os_pid, tether_worker:info(W))]),
      timer:sleep(infinity).
      """
      port = Port.open({:spawn_executable, System.find_executable("erl")},
                       [:binary, :exit_status, args: ["-noshell", "-pa", ebin, "-eval", expr]])
      {node_pid, python_pid} =
        receive do
          {^port, {:data, "pids " <> rest}} ->
            [a, b] = rest |> String.trim() |> String.split(" ")
            {a, b}
        after
          20_000 -> flunk("the node did not start its worker")
        end
      assert File.exists?("/proc/#{python_pid}")
      System.cmd("kill", ["-9", node_pid])
      # Its handler would run 60 s; the kernel kills it as its parent (erl_child_setup) goes.
      wait_until(fn -> not File.exists?("/proc/#{python_pid}") end, 200)
    end

    test "a keeper that dies is replaced, and the worker's directory watched again" do
      {:ok, w} = Tether.Worker.start(TestPython.opts())
      dir = private_dir(w)
      keeper = Process.whereis(:tether_pool_routes_keeper)
      Process.exit(keeper, :kill)
      wait_until(fn -> (k = Process.whereis(:tether_pool_routes_keeper)) != nil and k != keeper end)
      wait_until(fn -> :ets.lookup(:tether_pool_routes, {:dir, w}) != [] end)
      Process.exit(w, :kill)
      wait_until(fn -> not File.exists?(dir) end)
    end

    test "shm_keep: a large reply dropped after a timeout lets its region go too" do
      w = start_worker(shm_keep: 500)
      %{os_pid: os_pid} = Tether.Worker.info(w)
      dir = private_dir(w)
      regions = fn -> Path.wildcard(Path.join(dir, "tether-#{os_pid}-*")) |> Enum.filter(&File.regular?/1) end
      assert {:error, :timeout} = Tether.Worker.call(w, @m, "big_despite_cancel", [0.5, 4_000_000], 100)
      wait_until(fn -> Tether.Worker.info(w).phase == :ready end)
      wait_until(fn -> regions.() == [] end, 200)
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
    end

    test "shm_keep: 0 removes the file soon after a call, and does not spin a timer while the call runs" do
      w = start_worker(shm_threshold: 1000, shm_keep: 0)
      task = Task.async(fn -> Tether.Worker.call(w, @m, "sleep_with", [0.8, :binary.copy(<<1>>, 100_000)]) end)
      wait_until(fn -> Tether.Worker.info(w).running != nil end)
      {:reductions, r0} = Process.info(w, :reductions)
      Process.sleep(500)
      {:reductions, r1} = Process.info(w, :reductions)
      # Re-armed at once while the call ran, the 0 ms timer cost ~11,000 reductions in 500 ms.
      assert r1 - r0 < 2000
      assert {:ok, 100_000} = Task.await(task)
      wait_until(fn -> Tether.Worker.info(w).args_file_bytes == 0 end, 120)
    end

    test "shm_keep: :infinity keeps the arguments file for the worker's life; a bad value is refused by name" do
      w = start_worker(shm_threshold: 1000, shm_keep: :infinity)
      assert {:ok, _} = Tether.Worker.call(w, @m, "echo", [:binary.copy(<<7>>, 50_000)])
      Process.sleep(100)
      assert %{args_file_bytes: size} = Tether.Worker.info(w)
      assert size > 50_000
      for bad <- [-1, 1 <<< 59] do
        assert_raise ArgumentError, ~r/:shm_keep: expected a non-negative integer \(milliseconds\) up to 4294967295/, fn ->
          Tether.Worker.start_link(TestPython.opts(shm_keep: bad))
        end
      end

      assert_raise ArgumentError, ~r/:cancel_grace: expected an integer from 0 to 4294967295/, fn ->
        Tether.Worker.start_link(TestPython.opts(cancel_grace: 1 <<< 40))
      end
    end

    test "a reply too large to go inline keeps the large values inside it readable" do
      # The whole reply goes through shared memory as one frame, and the 2 MB binary inside it as its own
      # embedded frame: both are read before the call returns (the references go stale at the next call).
      w = start_worker()
      ints = Enum.to_list(1..300_000)
      blob = :binary.copy(<<1>>, 2_000_000)
      assert {{:ok, [^ints, ^blob]}, %{route: :shm}} = Tether.Worker.measure(w, @m, "echo", [[ints, blob]])
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
    end

    test "a name that already exists gets a new name, not a crash" do
      dir = TestPython.tmp_dir!()
      File.mkdir!(Path.join(dir, "taken"))
      File.write!(Path.join(dir, "taken-file"), "someone else's")
      names = fn list -> fn -> Agent.get_and_update(list, fn [h | t] -> {h, t} end) end end
      {:ok, dirs} = Agent.start_link(fn -> [~c"taken", ~c"fresh"] end)
      assert {:ok, new_dir} = :tether_private.make_dir(String.to_charlist(dir), names.(dirs))
      assert Path.basename(to_string(new_dir)) == "fresh"
      {:ok, files} = Agent.start_link(fn -> [~c"taken-file", ~c"fresh-file"] end)
      assert {:ok, path, fd} = :tether_private.create_file(String.to_charlist(dir), ~c"x", names.(files))
      :ok = :file.close(fd)
      assert Path.basename(to_string(path)) == "fresh-file"
      assert File.read!(Path.join(dir, "taken-file")) == "someone else's"
    end

    test "a private directory something got into before its chmod is dropped, links and all, not used" do
      # mkdir takes the umask's mode: under umask 000 another user planted cancel.new -> a file of root's.
      dir = TestPython.tmp_dir!()
      target = Path.join(dir, "victim")
      File.write!(target, "keep")
      planted = Path.join(dir, "planted")
      File.mkdir!(planted)
      File.ln_s!(target, Path.join(planted, "cancel.new"))
      assert :retry == :tether_private.restrict_dir(String.to_charlist(planted))
      refute File.exists?(planted)
      assert File.read!(target) == "keep"
      empty = Path.join(dir, "empty")
      File.mkdir!(empty)
      assert {:ok, _} = :tether_private.restrict_dir(String.to_charlist(empty))
      assert File.stat!(empty).mode |> Bitwise.band(0o777) == 0o700
    end

    test "directories left by killed workers or dead nodes are swept, nothing else" do
      dir = TestPython.tmp_dir!()
      hex = String.duplicate("ab", 16)
      # above Linux's largest pid: an owner that cannot be alive
      dead = Path.join(dir, "tether-4194305-#{hex}")
      alive = Path.join(dir, "tether-#{System.pid()}-#{hex}")
      open = Path.join(dir, "tether-4194306-#{hex}")
      for d <- [dead, alive, open], do: File.mkdir!(d)
      File.write!(Path.join(dead, "tether-args-x"), "old arguments")
      File.chmod!(dead, 0o700)
      File.chmod!(alive, 0o700)
      File.chmod!(open, 0o755)
      assert :tether_private.sweep(String.to_charlist(dir)) == [String.to_charlist(dead)]
      refute File.exists?(dead)
      assert File.dir?(alive) and File.dir?(open)
    end

    test "a call too large for the pipe is refused on the BEAM, and the worker carries on" do
      w = start_worker(shm_threshold: 1_000_000_000, max_message: 4096)
      assert {:error, {:message_too_large, size, 4096}} = Tether.Worker.call(w, @m, "echo", [:binary.copy("x", 10_000)])
      assert size > 10_000
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
    end

    test "a stopped worker answers worker_down" do
      w = start_worker()
      Tether.Worker.stop(w)
      assert {:error, {:worker_down, :noproc}} = Tether.Worker.call(w, @m, "add", [1, 2])
    end

    test "calls and replies go as compact messages once the ready lists them" do
      w = start_worker()
      info = Tether.Worker.info(w)
      assert info.messages == ["frame", "compact"]
      assert :tether_protocol.form(info) == :compact
      assert :tether_protocol.form(%{}) == :frame
      assert :tether_protocol.form(%{messages: ["frame"]}) == :frame
      map = %{id: 1, name: "small", price: 9.5, tags: [:a, :b], ok: true}
      assert {:ok, ^map} = Tether.Worker.call(w, @m, "echo", [map])
      {{:ok, ^map}, %{bytes_in: bytes_in, bytes_out: bytes_out}} = :tether_worker.measure(w, @m, "echo", [map], 5000)
      # No frame header (64 B) nor metadata map (over 100 B): the term and 8 bytes.
      etf_size = byte_size(:erlang.term_to_binary({:reply, 2, {:ok, map}}))
      assert bytes_out < etf_size + 64 and bytes_in < etf_size + 64
    end

    test "compact messages: round trip, a CRC that does not match, garbage and unknown atoms never raise" do
      msg = IO.iodata_to_binary(:tether_protocol.compact({:echo, %{"k" => [1, 2.5, "v"]}}))
      assert <<"TTMC", crc::32-little, etf::binary>> = msg
      assert crc == :erlang.crc32(etf)
      assert {:ok, {:echo, %{"k" => [1, 2.5, "v"]}}} = :tether_protocol.decode(msg)
      <<head::binary-size(byte_size(msg) - 1), last>> = msg
      assert {:error, {:checksum_mismatch, :compact_message}} = :tether_protocol.decode(<<head::binary, bxor(last, 1)>>)

      # An atom this node has never seen, in a message with a valid CRC: refused, not created.
      name = "tether_no_such_atom_" <> Integer.to_string(System.unique_integer([:positive]))
      unknown = <<131, 119, byte_size(name), name::binary>>
      forged = <<"TTMC", :erlang.crc32(unknown)::32-little, unknown::binary>>
      assert {:error, _} = :tether_protocol.decode(forged)

      for body <- [<<>>, <<131>>, <<131, 80, 255, 255, 255, 255, 120, 156>>, <<1, 2, 3>>] do
        assert {:error, _} = :tether_protocol.decode(<<"TTMC", :erlang.crc32(body)::32-little, body::binary>>)
      end

      assert {:error, _} = :tether_protocol.decode(<<"TTMC", 1, 2>>)
    end

    test "protocol atoms exist before any reply is decoded" do
      for atom <- :tether_protocol.atoms(), do: assert(is_atom(atom))
      assert length(:tether_protocol.atoms()) > 30
    end
  end

  describe "observability" do
    test "a Python that dies is logged with its signal, and one that keeps dying idle is started again ever later" do
      Tether.TestLogHandler.attach(:tether_exit_test)
      on_exit(fn -> :logger.remove_handler(:tether_exit_test) end)
      w = start_worker()
      os_pid = Tether.Worker.info(w).os_pid
      ExUnit.CaptureLog.capture_log(fn ->
        System.cmd("kill", ["-9", "#{os_pid}"])
        assert_receive {:log_event, %{level: :warning, msg: msg}}, 5000
        text = msg |> format_msg() |> IO.iodata_to_binary()
        assert text =~ "(os pid #{os_pid}) exited on signal 9 (SIGKILL"
        assert text =~ "between calls; starting it again"
      end)
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])

      # A module whose thread ends the process 0.3 s after it is imported (ready goes long before),
      # every time it starts: restarted at once, then after 100 ms, 200 ms, ...
      dir = TestPython.tmp_dir!()
      File.write!(Path.join(dir, "exits_soon.py"), """
      import os, threading
      threading.Timer(0.3, os._exit, (5,)).start()
      """)
      ExUnit.CaptureLog.capture_log(fn ->
        {:ok, loop} = Tether.Worker.start(TestPython.opts(modules: ["exits_soon"], env: [{"PYTHONPATH", TestPython.pythonpath([dir])}]))
        on_exit(fn -> TestPython.stop(loop) end)
        assert [first, second, third] = exit_logs(3, 10_000)
        assert first =~ "with status 5 between calls; starting it again"
        assert second =~ ~r/exit 2 in a row soon after starting: starting it again in 100 ms/
        assert third =~ ~r/exit 3 in a row soon after starting: starting it again in 200 ms/
      end)
    end

    test "Python logging reaches logger with the worker's metadata" do
      w = start_worker()
      Tether.TestLogHandler.attach(:tether_log_test)
      on_exit(fn -> :logger.remove_handler(:tether_log_test) end)

      ExUnit.CaptureLog.capture_log(fn ->
        assert {:ok, "logged"} = Tether.Worker.call(w, @m, "log_warning", ["disk almost full"])
      end)

      assert_receive {:log_event, %{level: :warning, msg: msg, meta: %{domain: [:tether, :python]} = meta}}, 2000
      assert meta.python_logger == "beam_handlers.audit"
      assert meta.tether_worker == w
      assert meta.os_pid == Tether.Worker.info(w).os_pid
      assert msg |> format_msg() |> IO.iodata_to_binary() =~ "disk almost full"
      refute Map.has_key?(meta, :python_extra)

      # What extra= adds to a record: metadata of its own, with binary keys (no atom is made).
      ExUnit.CaptureLog.capture_log(fn ->
        assert {:ok, "logged"} = Tether.Worker.call(w, @m, "log_with_extra", ["r-7"])
      end)

      assert_receive {:log_event, %{level: :warning, meta: %{python_extra: extra, python: python}}}, 2000
      assert extra == %{"request_id" => "r-7", "rows" => 3, "ratio" => 0.5, "ok" => true, "shape" => "(2, 3)",
                        "nan" => "nan"}
      assert python.function == "log_with_extra" and not Map.has_key?(python, "extra")
    end

    test "what the modules log, print and alert while they import reaches Logger and telemetry once ready" do
      Tether.TestLogHandler.attach(:tether_early_test)
      on_exit(fn -> :logger.remove_handler(:tether_early_test) end)
      test = self()
      :ok = :telemetry.attach(:tether_early_alert, [:tether, :alert], fn _, _, md, _ -> send(test, {:alert, md}) end, nil)
      on_exit(fn -> :telemetry.detach(:tether_early_alert) end)

      ExUnit.CaptureLog.capture_log(fn ->
        w = start_worker(modules: ["early_handlers"], log_level: :info)
        assert {:ok, "pong"} = Tether.Worker.call(w, "early_handlers", "ping", [])
        send(test, {:worker, w})
      end)

      assert_receive {:worker, w}
      text = fn msg -> msg |> format_msg() |> IO.iodata_to_binary() end
      assert_receive {:log_event, %{level: :warning, msg: m1, meta: %{python_logger: "early_handlers", tether_worker: ^w}}}, 2000
      assert text.(m1) =~ "loading the model at import"
      assert_receive {:log_event, %{level: :info, msg: m2, meta: %{python_logger: "early_handlers"}}}, 2000
      assert text.(m2) =~ "an info record at import"
      assert_receive {:log_event, %{level: :warning, msg: m3, meta: %{python_logger: "stderr"}}}, 2000
      assert text.(m3) =~ "a stray print at import"
      assert_receive {:alert, %{name: "at_import", state: :firing, worker: ^w}}, 2000
      assert_receive {:log_event, %{level: :warning, msg: m4, meta: %{python_logger: "py.warnings"}}}, 2000
      assert text.(m4) =~ "an old API at import"
      # Each once: the records are not also sent as stderr lines (Python's last resort printed them there).
      Process.sleep(300)
      {:messages, rest} = Process.info(self(), :messages)
      refute Enum.any?(rest, &match?({:log_event, _}, &1) and text.(elem(&1, 1).msg) =~ "at import")
    end

    test "log_level: :info forwards Python's INFO records, which Python's default level drops" do
      Tether.TestLogHandler.attach(:tether_info_test)
      on_exit(fn -> :logger.remove_handler(:tether_info_test) end)

      for {level, forwarded} <- [{nil, false}, {:info, true}] do
        w = if level, do: start_worker(log_level: level), else: start_worker()

        ExUnit.CaptureLog.capture_log(fn ->
          assert {:ok, "logged"} = Tether.Worker.call(w, @m, "log_info", ["level #{inspect(level)}"])
        end)

        if forwarded do
          assert_receive {:log_event, %{level: :info, msg: msg, meta: %{python_logger: "beam_handlers.audit"}}}, 2000
          assert msg |> format_msg() |> IO.iodata_to_binary() =~ "level :info"
        else
          refute_receive {:log_event, %{meta: %{python_logger: "beam_handlers.audit"}}}, 300
        end
      end

      assert_raise ArgumentError, ~r/:log_level: expected one of debug, info/, fn -> start_worker(log_level: :notice) end
    end

    test "crash reports and :sys.get_status show a worker's shape, not its environment or a call's arguments" do
      opts = TestPython.opts(env: [{"PYTHONPATH", TestPython.pythonpath()}, {"TETHER_TEST_SECRET", "hunter2"}])
      status = inspect(:sys.get_status(start_worker(env: opts[:env])), limit: :infinity, printable_limit: :infinity)
      assert status =~ "tether_worker: :ready" and status =~ "queued: 0"
      refute status =~ "hunter2"

      # A worker whose parent exits abnormally logs a crash report, with a call running and one queued.
      test = self()
      log =
        ExUnit.CaptureLog.capture_log(fn ->
          parent = spawn(fn ->
            {:ok, w} = Tether.Worker.start_link(opts)
            send(test, {:worker, w})
            receive do: (:never -> :ok)
          end)
          assert_receive {:worker, w}, 30_000
          ref = Process.monitor(w)
          # In order, and with time to spare: the echo raced the sleep to the worker, and on a loaded
          # machine the sleep could be over before the echo queued behind it.
          spawn(fn -> Tether.Worker.call(w, @m, "sleep", [3], 10_000) end)
          wait_until(fn -> inspect(:sys.get_status(w)) =~ ~s(running: {1, "beam_handlers", "sleep"}) end)
          spawn(fn -> Tether.Worker.call(w, @m, "echo", ["hunter3 " <> String.duplicate("x", 100)]) end)
          wait_until(fn -> Tether.Worker.info(w).queued == 1 end)
          Process.exit(parent, :boom)
          assert_receive {:DOWN, ^ref, :process, ^w, :boom}, 5_000
          Process.sleep(100)  # the report is logged as the worker exits
        end)

      assert log =~ "terminating" and log =~ "running:" and log =~ "queued: 1"
      refute log =~ "hunter2"
      refute log =~ "hunter3"
    end

    test "a Python warning reaches logger as one warning record" do
      w = start_worker()
      Tether.TestLogHandler.attach(:tether_warn_test)
      on_exit(fn -> :logger.remove_handler(:tether_warn_test) end)

      ExUnit.CaptureLog.capture_log(fn ->
        assert {:ok, "warned"} = Tether.Worker.call(w, @m, "warn", ["the old API is going away"])
      end)

      assert_receive {:log_event, %{level: :warning, msg: msg, meta: %{python_logger: "py.warnings"}}}, 2000
      text = msg |> format_msg() |> IO.iodata_to_binary()
      assert text =~ "UserWarning: the old API is going away" and text =~ "warnings.warn("
      # Its source line came with it, not as a second (stderr) record.
      refute_receive {:log_event, %{meta: %{domain: [:tether, :python]}}}, 300
    end

    test "telemetry events reach an attached handler" do
      test = self()
      events = :tether_telemetry.events()
      :ok = :telemetry.attach_many(:tether_test_handler, events, fn e, m, md, _ -> send(test, {:event, e, m, md}) end, nil)
      on_exit(fn -> :telemetry.detach(:tether_test_handler) end)

      w = start_worker(shm_threshold: 1000)
      assert_receive {:event, [:tether, :worker, :start], %{duration: d}, %{worker: ^w, os_pid: os_pid}}
      assert d > 0 and is_integer(os_pid)

      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
      assert_receive {:event, [:tether, :call, :start], %{system_time: _}, %{module: "beam_handlers", function: "add"}}
      assert_receive {:event, [:tether, :call, :stop], m, %{route: :inline, result: :ok, function: "add"}}
      assert m.duration > 0 and m.bytes_in > 0 and m.bytes_out > 0 and m.queue_time >= 0

      assert {:ok, _} = Tether.Worker.call(w, @m, "echo", [:binary.copy("x", 5000)])
      assert_receive {:event, [:tether, :call, :stop], %{bytes_in: bytes_in}, %{route: :shm, function: "echo"}}
      assert bytes_in > 5000

      # measure/5 is a call too: it used to send no events.
      assert {{:ok, 7}, %{bytes_in: measured}} = Tether.Worker.measure(w, @m, "add", [3, 4])
      assert_receive {:event, [:tether, :call, :stop], %{bytes_in: ^measured}, %{function: "add", result: :ok}}

      assert {:error, {:python, "ValueError", _, _}} = Tether.Worker.call(w, @m, "fail", ["x"])
      assert_receive {:event, [:tether, :call, :stop], _, %{result: :error, error: {:python, "ValueError", _, _}}}

      assert {:error, :timeout} = Tether.Worker.call(w, @m, "sleep", [2], 100)
      assert_receive {:event, [:tether, :call, :exception], %{duration: _}, %{reason: :timeout, kind: :error}}

      assert {:error, {:worker_exit, 3}} = Tether.Worker.call(w, @m, "crash", [])
      assert_receive {:event, [:tether, :worker, :exit], _, %{worker: ^w, reason: {:exit_status, 3}}}, 2000
    end
  end

  describe "metrics and the bulk path" do
    test "stats/1 answers Python's metrics snapshot with the worker's calls" do
      w = start_worker()
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
      assert {:error, {:python, "ValueError", _, _}} = Tether.Worker.call(w, @m, "fail", ["x"])
      assert {:ok, %{"worker" => worker, "operations" => ops}} = Tether.Worker.stats(w)
      assert worker["calls"] == 2
      assert %{"function" => "beam_handlers.fail", "route" => "pipe", "error" => "ValueError"} = worker["last_call"]
      assert Enum.any?(ops, &(&1["op"] == "worker_call" and &1["count"] >= 1))
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
    end

    test "stats/1: worker_call leaves out the handler's time, and a large reply written in place is counted" do
      w = start_worker(shm_threshold: 1024)
      assert {:ok, 0.2} = Tether.Worker.call(w, @m, "sleep", [0.2])
      assert {:ok, big} = Tether.Worker.call(w, @m, "big_binary", [100_000])
      assert byte_size(big) == 100_000
      assert {:ok, %{"operations" => ops, "worker" => %{"running" => nil}}} = Tether.Worker.stats(w)
      calls = Enum.filter(ops, &(&1["op"] == "worker_call" and &1["count"] > 0))
      # The 0.2 s the handler slept is the application's: it used to be counted as tether's, and fired alerts.
      assert Enum.sum(Enum.map(calls, & &1["seconds"])) < 0.1
      # The reply's frame went into the worker's region through encode().write_into: a dump_into now.
      assert Enum.any?(ops, &(&1["op"] == "dump_into" and &1["transport"] == "shm" and &1["count"] >= 1))
    end

    test "info/1's keys are atoms, those Python sends as strings for older nodes too" do
      w = start_worker()
      info = Tether.Worker.info(w)
      assert "release_shm" in info.notices and is_list(info.markers) and info.early_output == true
      assert Enum.all?(Map.keys(info), &is_atom/1)
    end

    test "info/1 shows the call Python is running now, while stats/1 waits behind it" do
      w = start_worker()
      assert %{running: nil} = Tether.Worker.info(w)
      me = self()
      task = Task.async(fn -> Tether.Worker.call(w, @m, "sleep", [0.4]) end)
      wait_until(fn -> Tether.Worker.info(w).running != nil end)
      assert %{running: %{module: "beam_handlers", function: "sleep", caller: caller, seconds: s}} =
               Tether.Worker.info(w)
      assert caller == task.pid and caller != me
      Process.sleep(50)
      assert %{running: %{seconds: later}} = Tether.Worker.info(w)
      assert s >= 0 and later >= s + 0.04 and later < 0.4
      assert {:ok, 0.4} = Task.await(task)
      assert %{running: nil, queued: 0} = Tether.Worker.info(w)
    end

    test "spin_us: how long Python polls for the next call, and what its stats say spinning did" do
      for {us, expect} <- [{nil, 200}, {0, 0}, {10_000, 10_000}] do
        w = start_worker(if us, do: [spin_us: us], else: [])
        for _ <- 1..20, do: assert({:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2]))
        assert {:ok, %{"worker" => %{"spin" => spin}}} = Tether.Worker.stats(w)
        assert spin["us"] == expect

        waits = spin["hits"] + spin["misses"] + spin["skipped"]

        case expect do
          0 -> assert waits == 0
          # how many calls the default spin finds depends on the host; every wait is counted
          200 -> assert waits >= 21
          # 10 ms: calls one after another arrive while Python still polls
          10_000 -> assert waits >= 21 and spin["hits"] >= 12
        end

        TestPython.stop(w)
      end

      for bad <- [10_001, -1, 1.5] do
        assert_raise ArgumentError, ~r/:spin_us: expected an integer from 0 to 10000/, fn ->
          Tether.Worker.start_link(TestPython.opts(spin_us: bad))
        end
      end
    end

    test "the worker's stats file is where tether stats looks: its private directory" do
      w = start_worker()
      %{os_pid: os_pid} = Tether.Worker.info(w)
      dir = private_dir(w)
      assert %{"worker" => %{"pid" => ^os_pid}} = dir |> Path.join("stats.json") |> File.read!() |> decode_json()
      assert File.stat!(dir).mode |> band(0o777) == 0o700
    end

    test "measure/5 reports each stage, and large arguments keep their bytes" do
      w = start_worker(shm_threshold: 1 <<< 16)
      data = :binary.copy(<<1.5::float-32-native>>, 1 <<< 18)
      tensor = Tether.tensor(data, {:f, 32}, {1 <<< 18})
      assert {{:ok, %{t: %{data: ^data}, k: [1, 2]}}, stats} = Tether.Worker.measure(w, @m, "echo", [%{t: tensor, k: [1, 2]}])
      assert stats.route == :shm
      assert Enum.sort(Map.keys(stats.stages)) == [:decode, :encode, :python, :read, :write]
      assert Enum.all?(Map.values(stats.stages), &(is_integer(&1) and &1 >= 0))
      assert stats.stages.python > 0 and stats.bytes_in > byte_size(data)
      # An idle worker queues nothing: queue_time used to include encoding and writing the arguments.
      assert System.convert_time_unit(stats.queue_time, :native, :microsecond) < stats.stages.write
      assert {:ok, %{"worker" => %{"last_call" => %{"route" => "shm"}}}} = Tether.Worker.stats(w)
    end

    test "large arguments: NaN atoms still arrive as floats, plain ones skip Python's walk" do
      w = start_worker(shm_threshold: 1024)
      big = :binary.copy("x", 4096)
      assert {{:ok, [{"float", "nan"}, "bytes"]}, %{route: :shm}} = Tether.Worker.measure(w, @m, "types_of", [[:nan, big]])
      assert {{:ok, ["bytes", "int"]}, %{route: :shm}} = Tether.Worker.measure(w, @m, "types_of", [[big, 1]])
      assert {:ok, [:nan, ^big]} = Tether.Worker.call(w, @m, "echo", [[:nan, big]])
    end

    test "an alert Python raises, then clears, arrives as [:tether, :alert] events" do
      test = self()
      :ok = :telemetry.attach(:tether_alert_test, [:tether, :alert], fn e, m, md, _ -> send(test, {:event, e, m, md}) end, nil)
      on_exit(fn -> :telemetry.detach(:tether_alert_test) end)
      w = start_worker()
      %{os_pid: os_pid} = Tether.Worker.info(w)
      assert {:ok, true} = Tether.Worker.call(w, @m, "raise_alert", ["disk_slow", 0.25])
      assert_receive {:event, [:tether, :alert], %{system_time: _},
                      %{name: "disk_slow", state: :firing, message: "throughput fell", suggestion: "look at the disk",
                        figures: %{"ratio" => 0.25, "worst" => :infinity}, worker: ^w, os_pid: ^os_pid}}, 2000
      assert {:ok, true} = Tether.Worker.call(w, @m, "clear_alert", ["disk_slow"])
      assert_receive {:event, [:tether, :alert], %{system_time: _},
                      %{name: "disk_slow", state: :cleared, message: "cleared: throughput fell",
                        figures: %{"ratio" => 0.25}, worker: ^w, os_pid: ^os_pid}}, 2000
      assert {:ok, false} = Tether.Worker.call(w, @m, "clear_alert", ["disk_slow"])
      refute_receive {:event, [:tether, :alert], _, _}, 200
      # Cleared with the figures as it ended: they arrive beside those it fired with.
      assert {:ok, true} = Tether.Worker.call(w, @m, "raise_alert", ["disk_slow", 0.25])
      assert {:ok, true} = Tether.Worker.call(w, @m, "clear_alert", ["disk_slow", 0.9])
      assert_receive {:event, [:tether, :alert], _,
                      %{name: "disk_slow", state: :cleared, message: "throughput back",
                        figures: %{"ratio" => 0.9, "fired" => %{"ratio" => 0.25, "worst" => :infinity}}}}, 2000
    end

    test "tether_args encodes exactly as term_to_binary, large binaries referenced" do
      big = :binary.copy(<<7>>, 70_000)
      wide = Map.new(1..40, fn i -> {i, if(rem(i, 3) == 0, do: big, else: i)} end)

      for term <- [[big], %{a: big, b: [1, big | big]}, {big, {big}}, wide, [1, 2, 3], %{big => 1}, <<1, 2>>] do
        assert IO.iodata_to_binary(:tether_args.encode(term)) == :erlang.term_to_binary(term, minor_version: 2)
      end

      frame = IO.iodata_to_binary(:tether_args.frame([wide]))
      assert {:ok, [^wide]} = :tether.decode(frame)
      assert :tether_args.plain([%{id: 1, name: "x"}, {1, 2}])
      refute :tether_args.plain([%{x: [1, :infinity]}])
      refute :tether_args.plain([{:"$tether", "f"}])
      refute :tether_args.plain([IO.iodata_to_binary(Tether.tensor(<<0::32>>, {:f, 32}, {1}))])
    end
  end

  defp decode_json(text) do
    # The snapshot file is JSON; OTP 25 has no JSON module, and a key check is all this needs.
    %{"worker" => %{"pid" => text |> then(&Regex.run(~r/"worker": \{[^}]*"pid": (\d+)/, &1)) |> Enum.at(1) |> String.to_integer()}}
  end

  defp format_msg({:string, s}), do: s
  defp format_msg({:report, r}), do: inspect(r)
  defp format_msg({format, args}), do: :io_lib.format(format, args)

  defp gone?(pid) do
    case File.read("/proc/#{pid}/status") do
      {:ok, status} -> status =~ ~r/State:\s+Z/
      _ -> true
    end
  end
end
