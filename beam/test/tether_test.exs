defmodule TetherTest do
  use ExUnit.Case, async: true
  doctest Tether

  @golden Path.expand("../../tests/golden", __DIR__)

  test "etf frames round-trip every kind of term" do
    terms = [
      1, -(2 ** 100), 3.5, :atom, "string", <<0, 255>>, [], [1, [2]], {:ok, {1, 2}},
      %{"a" => 1, 3 => %{nested: true}, b: [:x]}, [1 | 2], self(), make_ref(), nil, true
    ]

    for term <- terms do
      assert {:ok, ^term} = term |> Tether.encode() |> Tether.decode()
      assert {:ok, ^term} = term |> Tether.encode(compressed: true) |> Tether.decode()
    end
  end

  test "raw frames come back as sub-binaries of the frame" do
    data = :crypto.strong_rand_bytes(100_000)
    frame = data |> Tether.encode(format: :raw) |> IO.iodata_to_binary()
    assert {:ok, ^data} = Tether.decode(frame)
    {:ok, out} = Tether.decode(frame)
    assert :binary.referenced_byte_size(out) == byte_size(frame)
  end

  test "tensors keep type, shape and bytes" do
    for {type, bits} <- [{{:f, 32}, 32}, {{:f, 64}, 64}, {{:s, 64}, 64}, {{:u, 8}, 8}, {{:c, 64}, 64}, {{:bf, 16}, 16}] do
      data = :crypto.strong_rand_bytes(div(bits, 8) * 6)
      {:ok, t} = data |> Tether.tensor(type, {2, 3}) |> Tether.decode()
      assert t.type == type and t.shape == {2, 3} and t.data == data
    end

    assert_raise ArgumentError, ~r/needs 8 bytes of data, got 3/, fn -> Tether.tensor(<<1, 2, 3>>, {:f, 32}, {2}) end
    assert_raise ArgumentError, ~r/rows \(a list of maps\) or columns/, fn -> Tether.table([1, 2]) end
    assert_raise ArgumentError, ~r/format: :raw encodes a binary/, fn -> Tether.encode(1, format: :raw) end
  end

  test "misused codec calls name the option or argument, and decode never raises" do
    for {opts, key} <- [
          {[compresion: :gzip], :compresion},
          {[format: :nope], :format},
          {[compression: :lz4], :compression},
          {[level: "9", compression: :gzip], :level},
          {[metadata: [1]], :metadata},
          {[step: ""], :step}
        ] do
      error = assert_raise ArgumentError, fn -> Tether.encode(1, opts) end
      assert Exception.message(error) =~ "invalid option #{inspect(key)}:"
    end

    assert_raise ArgumentError, ~r/expected a keyword list or a map/, fn -> Tether.encode(1, 5) end
    assert_raise ArgumentError, ~r/tensor_type/, fn -> Tether.tensor(<<1, 2>>, {:q, 8}, {2}) end
    assert_raise ArgumentError, ~r/tensor_shape/, fn -> Tether.tensor(<<>>, {:u, 8}, {-1}) end
    assert_raise ArgumentError, ~r/tensor_data/, fn -> Tether.tensor(5, {:u, 8}, {1}) end
    frame = Tether.encode([1, 2])
    assert {:ok, [1, 2]} = Tether.decode(frame, safe: true)
    assert {:error, {:bad_option, :saf, _}} = Tether.decode(frame, saf: true)
    assert {:error, {:bad_option, :options, _}} = Tether.decode(frame, 5)
    assert {:error, {:not_a_frame, _}} = Tether.decode(123)
    assert {:error, {:not_a_frame, _}} = Tether.inspect(:frame)
  end

  test "inspect reads header and metadata only" do
    frame = Tether.encode([1, 2, 3], metadata: %{"run" => "r1"}) |> IO.iodata_to_binary()
    {:ok, info} = Tether.inspect(binary_part(frame, 0, byte_size(frame) - 1))
    assert info.format == :etf and info.checksum == :crc32
    assert info.metadata["user"] == %{"run" => "r1"}
    assert info.metadata["format"] == "etf"
  end

  test "errors are tagged tuples that name the problem" do
    frame = Tether.encode(%{k: "v"}) |> IO.iodata_to_binary()
    size = byte_size(frame)
    <<head::binary-size(size - 1), last>> = frame
    assert {:error, {:checksum_mismatch, _stored, _computed}} = Tether.decode(head <> <<Bitwise.bxor(last, 1)>>)
    assert {:error, {:truncated, ^size, _}} = Tether.decode(binary_part(frame, 0, size - 10))
    assert {:error, {:trailing_bytes, 1}} = Tether.decode(frame <> <<0>>)
    <<a::binary-size(10), b, rest::binary>> = frame
    assert {:error, {:header_checksum_mismatch, _, _}} = Tether.decode(a <> <<Bitwise.bxor(b, 4)>> <> rest)
    assert {:error, :not_a_tether_frame} = Tether.decode("nope")
    fun_frame = Tether.encode([fn x -> x end]) |> IO.iodata_to_binary()
    assert {:error, :funs_refused} = Tether.decode(fun_frame)
    # External funs, funs inside compressed ETF (whose bytes hide the tags), and strings full of
    # the tag bytes ("p" is NEW_FUN_EXT's, "q" EXPORT_EXT's) that are no funs at all.
    assert {:error, :funs_refused} = Tether.decode(Tether.encode(%{f: &Enum.map/2}) |> IO.iodata_to_binary())
    value = [fn x -> x end, :binary.copy("a", 10_000)]
    assert <<131, 80, _::binary>> = :erlang.term_to_binary(value, [:compressed])
    packed = Tether.encode(value, compressed: true) |> IO.iodata_to_binary()
    assert {:error, :funs_refused} = Tether.decode(packed)
    plain = %{pq: "ppqq", p: [:q, "p" <> <<0, 0>>, {:qq, "q" <> <<100>>}]}
    assert {:ok, ^plain} = Tether.decode(Tether.encode(plain) |> IO.iodata_to_binary())
    # binary_to_term does not check NEW_FUN_EXT's size field: a fun whose size says anything is still one.
    etf = :erlang.term_to_binary({:echo, fn x -> x end})
    {at, _} = :binary.match(etf, <<112>>)
    <<pre::binary-size(at), 112, size::32, post::binary>> = etf
    forged = <<pre::binary, 112, Bitwise.bor(size, 0x01000000)::32, post::binary>>
    assert {:echo, f} = :erlang.binary_to_term(forged)
    assert is_function(f)
    limits = %{safe: true, max_uncompressed_size: 1_073_741_824}
    assert {:error, :funs_refused} = :tether_formats.decode(:etf, %{}, forged, limits)
    compact = <<"TTMC", :erlang.crc32(forged)::32-little, forged::binary>>
    assert {:error, :funs_refused} = :tether_protocol.decode(compact)
  end

  test "frames written by Python (golden files) decode" do
    {:ok, rows} = Tether.decode(File.read!(Path.join(@golden, "etf_rows.tthr")), verify: false)
    assert %{"n" => nil, "rows" => [%{id: 1, name: "a", tags: {:x, <<1>>}}]} = rows
    {:ok, t} = Tether.decode(File.read!(Path.join(@golden, "ndarray_f4_C.tthr")), verify: false)
    assert t.type == {:f, 32} and t.shape == {3, 4}
    assert <<0.0::float-32-little, 1.0::float-32-little, _::binary>> = t.data
    big = -(2 ** 70) + 3
    assert {:ok, ^big} = Tether.decode(File.read!(Path.join(@golden, "scalar_int.tthr")), verify: false)
    assert {:ok, "grüße ✓"} = Tether.decode(File.read!(Path.join(@golden, "scalar_str.tthr")), verify: false)
    {:ok, gz} = Tether.decode(File.read!(Path.join(@golden, "raw_gzip.tthr")), verify: false)
    assert gz == :binary.copy("abc", 30_000)
    assert {:error, {:unverifiable_checksum, :xxh3_64, _}} = Tether.decode(File.read!(Path.join(@golden, "raw_bytes.tthr")))
    assert {:error, {:unsupported_compression, :zstd, _}} =
             Tether.decode(File.read!(Path.join(@golden, "etf_zstd.tthr")), verify: false)
    assert {:error, {:unsupported_format, :pickle}} =
             Tether.decode(File.read!(Path.join(@golden, "pickle_set.tthr")), verify: false)
  end

  test "a pickle frame names the Python type inside without being decoded" do
    python = System.get_env("TETHER_PYTHON") || raise "set TETHER_PYTHON (make test does)"
    code = "import sys, fractions, tether; sys.stdout.buffer.write(tether.dumps(fractions.Fraction(1, 3)))"
    env = [{"PYTHONPATH", Path.expand("../../src", __DIR__)}]
    {frame, 0} = System.cmd(python, ["-c", code], env: env)
    assert {:ok, %{format: :pickle, metadata: %{"type" => type}}} = Tether.inspect(frame)
    assert type["python_type"] == "fractions.Fraction"
    assert {:error, {:unsupported_format, :pickle}} = Tether.decode(frame)
  end
end

defmodule Tether.WorkerTest do
  use ExUnit.Case, async: false

  setup_all do
    python = System.get_env("TETHER_PYTHON") || raise "set TETHER_PYTHON (make test does)"
    handlers = Path.expand("../../tests", __DIR__)
    src = Path.expand("../../src", __DIR__)
    [opts: [python: python, modules: ["beam_handlers"], env: [{"PYTHONPATH", "#{handlers}:#{src}"}]]]
  end

  setup %{opts: opts} do
    {:ok, w} = Tether.Worker.start_link(opts)
    # The worker is linked to the test process and may already be stopping.
    on_exit(fn ->
      try do
        Tether.Worker.stop(w)
      catch
        :exit, _ -> :ok
      end
    end)
    [w: w]
  end

  test "small calls, structured errors and the allow-list", %{w: w} do
    assert {:ok, 3} = Tether.Worker.call(w, "beam_handlers", "add", [1, 2])
    assert {:ok, %{"a" => [1, {2, :x}]}} = Tether.Worker.call(w, "beam_handlers", "echo", [%{"a" => [1, {2, :x}]}])
    assert {:error, {:python, "ValueError", "boom", tb}} = Tether.Worker.call(w, "beam_handlers", "fail", ["boom"])
    assert tb =~ "Traceback"
    assert {:error, {:undefined_function, "beam_handlers", "_private"}} = Tether.Worker.call(w, "beam_handlers", "_private", [])
    assert {:error, {:undefined_function, "os", "system"}} = Tether.Worker.call(w, "os", "system", ["true"])
  end

  test "a handler module's imports are not on the allow-list; its package's re-exports are", %{opts: opts} do
    {:ok, w} = Tether.Worker.start_link(Keyword.put(opts, :modules, ["facade_handlers"]))
    assert {:ok, 21} = Tether.Worker.call(w, "facade_handlers", "local", [20])
    assert {:ok, 40} = Tether.Worker.call(w, "facade_handlers", "double", [20])
    assert {:ok, nil} = Tether.Worker.call(w, "facade_handlers", "which", ["no-such-command-here"])
    # `from os import system` in the module does not make it callable through the module.
    assert {:error, {:undefined_function, "facade_handlers", "system"}} =
             Tether.Worker.call(w, "facade_handlers", "system", ["true"])
    assert {:error, {:undefined_function, "facade_handlers", "getcwd"} = reason} =
             Tether.Worker.call(w, "facade_handlers", "getcwd", [])
    assert Exception.message(%Tether.Error{reason: reason}) =~ "only imported there"
    assert_raise ArgumentError, ~r/invalid function: expected a function name/, fn ->
      Tether.Worker.call(w, "facade_handlers", 5, [])
    end

    assert_raise ArgumentError, ~r/invalid args: expected the call's arguments as a list/, fn ->
      Tether.Worker.call(w, "facade_handlers", "local", 20)
    end

    assert {:error, {:bad_argument, :module, _}} = :tether_worker.call(w, 5, "local", [20])
    Tether.Worker.stop(w)
  end

  test "tensors go through shared memory and keep their bytes", %{w: w} do
    data = for i <- 1..1_000_000, into: <<>>, do: <<i * 1.0::float-32-native>>
    {:ok, t} = Tether.Worker.call(w, "beam_handlers", "scale", [Tether.tensor(data, {:f, 32}, {1000, 1000}), 2.0], 30_000)
    assert t.type == {:f, 32} and t.shape == {1000, 1000}
    expected = for i <- 1..1_000_000, into: <<>>, do: <<i * 2.0::float-32-native>>
    assert t.data == expected
    assert {:ok, {"ndarray", "float32", [1000, 1000], false}} =
             Tether.Worker.call(w, "beam_handlers", "describe", [Tether.tensor(data, {:f, 32}, {1000, 1000})], 30_000)
    big = :crypto.strong_rand_bytes(8_000_000)
    assert {:ok, ^big} = Tether.Worker.call(w, "beam_handlers", "echo", [big], 30_000)
  end

  test "large messages inline through the pipe keep their bytes", %{opts: opts} do
    # No shared memory: 3 MB each way through {packet, 4}, read in several chunks.
    {:ok, w} = Tether.Worker.start_link(Keyword.put(opts, :shm_threshold, 1_099_511_627_776))
    big = :crypto.strong_rand_bytes(3_000_000)
    assert {:ok, ^big} = Tether.Worker.call(w, "beam_handlers", "echo", [big], 30_000)
    assert {:ok, 3} = Tether.Worker.call(w, "beam_handlers", "add", [1, 2])
    Tether.Worker.stop(w)
  end

  test "a crash fails the caller, the next call gets a fresh worker", %{w: w} do
    assert {:error, {:worker_exit, 3}} = Tether.Worker.call(w, "beam_handlers", "crash", [])
    assert {:ok, 42} = Tether.Worker.call(w, "beam_handlers", "add", [40, 2])
  end

  test "metadata with atoms reads the same in Python and on a node that never saw them", %{w: w} do
    meta = %{source: :sensor_zq81, tags: [:a, "b", nil, true], nested: %{"k" => {:ok, 1}}}
    frame = Tether.encode(1, metadata: meta, parent: [%{step: :ingest_zq81}])
    expected = %{"source" => "sensor_zq81", "tags" => ["a", "b", nil, true], "nested" => %{"k" => {"ok", 1}}}
    assert {:ok, ^expected} = :tether.user_metadata(frame)
    path = Path.join(System.tmp_dir!(), "tether-meta-#{System.unique_integer([:positive])}.tthr")
    File.write!(path, frame)
    on_exit(fn -> File.rm(path) end)
    assert {:ok, %{"user" => user, "lineage" => [_own, %{"step" => "ingest_zq81"}]}} =
             Tether.Worker.call(w, "beam_handlers", "frame_user_metadata", [path])
    assert user == %{"source" => "sensor_zq81", "tags" => ["a", "b", nil, true], "nested" => %{"k" => {"ok", 1}}}
    # Written as binaries, so a reader decoding metadata with [safe] never meets an atom it lacks.
    {:ok, _, meta_bin, _} = :tether_frame.open(IO.iodata_to_binary(frame), true)
    assert :erlang.binary_to_term(meta_bin, [:safe])["user"]["source"] == "sensor_zq81"
    for {bad, path} <- [{%{owner: self()}, "$.owner"}, {%{a: [1, make_ref()]}, "$.a[1]"}, {%{"a" => 2, a: 1}, "$ has"}] do
      error = assert_raise ArgumentError, fn -> Tether.encode(1, metadata: bad) end
      assert Exception.message(error) =~ path
    end
  end

  test "a Python frame of a dict holding NaN decodes on the BEAM as Nx's atoms", %{w: w} do
    {:ok, frame} = Tether.Worker.call(w, "beam_handlers", "nan_frame", [])
    assert {:ok, %{"loss" => :nan, "best" => :neg_infinity, "ok" => 1.5}} = Tether.decode(frame)
  end

  test "elixir structs map to Python types and back", %{w: w} do
    dt = ~U[2024-01-02 03:04:05.123456Z]
    assert {:ok, {"datetime", nil}} = Tether.Worker.call(w, "beam_handlers", "describe", [dt])
    assert {:ok, ^dt} = Tether.Worker.call(w, "beam_handlers", "echo", [dt])
    for value <- [~D[2024-02-29], ~N[2024-01-02 03:04:05.000001], MapSet.new([1, 2, 3]), 1..10//3] do
      assert {:ok, ^value} = Tether.Worker.call(w, "beam_handlers", "echo", [value])
    end
  end
  test "a frame extends the lineage of the frame its value came from" do
    first = Tether.encode(%{n: 1}, step: "ingest")
    {:ok, %{metadata: meta}} = Tether.inspect(first)
    second = Tether.encode(%{n: 2}, parent: meta, step: "enrich")
    {:ok, %{metadata: %{"lineage" => lineage}}} = Tether.inspect(second)
    assert [%{"step" => "enrich", "at" => at}, %{"step" => "ingest"}] = lineage
    assert is_integer(at)
    # Without parent or step, the cached metadata is written as before.
    {:ok, %{metadata: %{"lineage" => [own]}}} = Tether.inspect(Tether.encode(%{n: 3}))
    refute Map.has_key?(own, "step")
    assert {:ok, %{"run" => 7}} = :tether.user_metadata(Tether.encode(1, metadata: %{"run" => 7}))
  end

  test "call targets named as iodata, as the specs allow, are the names they spell" do
    assert {:ok, "pkg.mod", "sqrt"} = :tether_options.target([~c"pkg", ".mod"], [<<"sq">>, ~c"rt"], [])
    assert {:ok, "math", "f"} = :tether_options.target([<<"math">>], :f, [])
    assert {:error, {:bad_argument, :module, _}} = :tether_options.target([:math], "f", [])
    assert {:error, {:bad_argument, :module, _}} = :tether_options.target([<<>>], "f", [])
  end
end
