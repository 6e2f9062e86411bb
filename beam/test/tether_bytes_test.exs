defmodule Tether.BytesTest do
  # Tether.bytes/1 against a real `python -m tether.worker`: a marked binary arrives as bytes even
  # when it is a whole frame, and frames a handler returns as bytes arrive as binaries.
  use ExUnit.Case, async: false
  alias Tether.TestPython

  @m "bytes_handlers"
  @support Path.expand("support/python", __DIR__)

  defp start_worker(modules, extra \\ []) do
    opts = TestPython.opts([modules: modules, env: [{"PYTHONPATH", TestPython.pythonpath([@support])}]] ++ extra)
    {:ok, w} = Tether.Worker.start_link(opts)
    on_exit(fn -> TestPython.stop(w) end)
    w
  end

  defp frame(term), do: IO.iodata_to_binary(Tether.encode(term))

  describe "arguments" do
    test "a marked frame arrives as its bytes; the same frame unmarked arrives decoded" do
      w = start_worker([@m])
      f = frame(%{"id" => 7})
      assert {:ok, {"bytes", ^f, false}} = Tether.Worker.call(w, @m, "kind", [Tether.bytes(f)])
      assert {:ok, {"dict", repr, false}} = Tether.Worker.call(w, @m, "kind", [f])
      assert repr == "{b'id': 7}"
    end

    test "markers nested in maps, lists and tuples, and a tensor frame" do
      w = start_worker([@m])
      t = Tether.tensor(<<1.0::float-32-native, 2.0::float-32-native>>, {:f, 32}, {2})
      args = [%{"frames" => [Tether.bytes(t)]}]
      assert {:ok, %{"frames" => [^t]}} = Tether.Worker.call(w, "bytes_handlers", "forward", args)
    end

    test "with binaries: :str a marked binary is still bytes, an unmarked one a str" do
      w = start_worker([@m], binaries: :str)
      assert {:ok, {"bytes", "héllo", false}} = Tether.Worker.call(w, @m, "kind", [Tether.bytes("héllo")])
      assert {:ok, {"str", "'héllo'", false}} = Tether.Worker.call(w, @m, "kind", ["héllo"])
    end

    test "a large marked frame goes through the arguments file and arrives as a read-only memoryview" do
      w = start_worker([@m], shm_threshold: 1024)
      big = frame(:binary.copy(<<3>>, 200_000))
      args = [Tether.bytes(big)]
      refute :tether_args.plain(args)
      {{:ok, {"memoryview", ^big, true}}, %{route: :shm}} = Tether.Worker.measure(w, @m, "kind", args)
    end

    test "a worker whose ready does not list the marker is not sent it: a clear error, and the worker goes on" do
      w = start_worker(["older_marker_handlers"])
      refute "$tether_bytes" in Tether.Worker.info(w).markers
      assert {:error, {:bad_request, message}} =
               Tether.Worker.call(w, "older_marker_handlers", "echo", [%{"blob" => Tether.bytes("x")}])
      assert message =~ ~s($[0].blob: Tether.bytes/1)
      assert message =~ "upgrade tether in the worker's Python environment"
      assert {:ok, "x"} = Tether.Worker.call(w, "older_marker_handlers", "echo", ["x"])
    end
  end

  describe "results" do
    test "a frame returned as bytes arrives as the frame's binary, small or embedded, inline or in shared memory" do
      # 50_000: the 100 KB frame is embedded through the region, the reply around it stays inline.
      for shm <- [1_048_576, 50_000] do
        w = start_worker([@m], shm_threshold: shm)
        {:ok, small} = Tether.Worker.call(w, @m, "frame_of", [[1, 2]])
        assert is_binary(small) and {:ok, [1, 2]} == Tether.decode(small)

        {{:ok, large}, %{route: route}} = Tether.Worker.measure(w, @m, "raw_frame", [100_000])
        assert route == if(shm < 100_000, do: :shm, else: :inline)
        assert is_binary(large) and {:ok, :binary.copy(<<0x5A>>, 100_000)} == Tether.decode(large)
        TestPython.stop(w)
      end
    end

    test "a marked frame goes to Python and back unchanged, small and large" do
      w = start_worker([@m])

      for f <- [frame([1, 2]), frame(:binary.copy(<<9>>, 100_000))] do
        assert {:ok, ^f} = Tether.Worker.call(w, @m, "forward", [Tether.bytes(f)])
      end
    end
  end

  test "both languages name the marker alike: the worker's ready lists the tag this node writes" do
    w = start_worker([@m])
    {tag, "x"} = Tether.bytes("x")
    assert Atom.to_string(tag) in Tether.Worker.info(w).markers
  end

  test "Tether.bytes/1 takes binaries and iodata only" do
    assert {:"$tether_bytes", "ab"} = Tether.bytes(["a", ?b])
    assert_raise ArgumentError, ~r/takes a binary or iodata, got: :x/, fn -> Tether.bytes(:x) end
    assert_raise ArgumentError, ~r/got: \[:x\]/, fn -> Tether.bytes([:x]) end
  end
end
