defmodule TetherStreamTest do
  # Streams across the two runtimes: Python's tether.stream writes and reads
  # through the real venv interpreter; Elixir reads, checks, resumes and writes.
  use ExUnit.Case, async: false
  import Bitwise
  doctest Tether.Stream

  alias Tether.TestPython

  # One script, one command per run: write or read a stream with Python's
  # StreamWriter/StreamReader. Arguments and results travel as ETF files
  # (tether.etf on the Python side), so nothing is parsed by hand.
  @script ~S"""
  import sys
  import numpy as np, pyarrow as pa
  from tether import etf
  from tether.stream import Checkpoint, StreamReader, StreamWriter, verify_stream

  VALUES = [{"a": 1, "b": [1, 2.5, "s"]}, [1, 2, 3], "text", 12345678901234567890, None, 3.5,
            b"bytes value", (1, "x")]
  BUFFER = bytes(range(256)) * 40
  ARRAY = np.arange(1000, dtype="<f8").reshape(250, 4)
  TABLE = pa.table({"id": list(range(100)), "name": [f"n{i}" for i in range(100)]})

  def write(path, args):
      opts = dict(compression=args["compression"], checksum=args["checksum"], chunk_size=args["chunk_size"])
      if args.get("resume"):
          opts["resume"] = Checkpoint.from_dict(args["resume"])
      if args.get("reader"):
          opts["reader"] = args["reader"]
      with open(path, "ab" if args.get("append") else "wb") as f:
          w = StreamWriter(f, **opts)
          kind = args["kind"]
          if kind == "values":
              for v in VALUES[: args.get("count", len(VALUES))]:
                  w.write(v)
          elif kind == "buffer":
              w.write_buffer(BUFFER[: args.get("bytes", len(BUFFER))])
          elif kind == "array":
              w.write_array(ARRAY)
          elif kind == "table":
              w.write_table(TABLE)
          elif kind == "strings":
              for v in args["values"]:
                  w.write(v)
          elif kind == "rows":
              for n in args["rows"]:
                  w.write([{"id": i, "name": f"n{i}"} for i in range(n)])
          cp = w.abort() if args.get("abort") else w.close()
      return cp.as_dict()

  def plain(v):
      if isinstance(v, np.ndarray):
          return {"dtype": v.dtype.str, "shape": list(v.shape), "data": v.tobytes()}
      return bytes(v) if isinstance(v, memoryview) else v

  def read(path, args):
      resume = Checkpoint.from_dict(args["resume"]) if args.get("resume") else None
      with open(path, "rb") as f:
          r = StreamReader(f, resume=resume)
          values = [plain(v) for v in r]
      out = {"values": values, "complete": r.complete, "checkpoint": r.checkpoint().as_dict()}
      if not resume:
          with open(path, "rb") as f:
              out["verify"] = verify_stream(f)
      return out

  def arrow_check(path, args):
      # The Arrow IPC bytes the BEAM got, one per chunk, put back together.
      with open(path, "rb") as f:
          parts = [pa.ipc.open_stream(bytes(v)).read_all() for v in StreamReader(f)]
      return pa.concat_tables(parts).equals(TABLE)

  cmd, path, args_path, out_path = sys.argv[1:5]
  with open(args_path, "rb") as f:
      args = etf.decode(f.read(), binaries="str")
  result = {"write": write, "read": read, "arrow_check": arrow_check}[cmd](path, args)
  with open(out_path, "wb") as f:
      f.write(etf.encode(result))
  """

  defp py!(cmd, path, args \\ %{}) do
    dir = Path.dirname(path)
    n = System.unique_integer([:positive])
    args_path = Path.join(dir, "args-#{n}.etf")
    out_path = Path.join(dir, "out-#{n}.etf")
    File.write!(args_path, :erlang.term_to_binary(args))
    {output, status} =
      System.cmd(TestPython.python(), ["-c", @script, cmd, path, args_path, out_path],
        env: [{"PYTHONPATH", TestPython.pythonpath()}], stderr_to_stdout: true)

    assert status == 0, output
    :erlang.binary_to_term(File.read!(out_path))
  end

  defp py_write!(path, kind, opts \\ []) do
    args =
      Map.merge(%{"kind" => kind, "compression" => "none", "checksum" => "crc32", "chunk_size" => 1 <<< 20},
        Map.new(opts, fn {k, v} -> {Atom.to_string(k), v} end))

    py!("write", path, args)
  end

  # Checkpoints cross to Python with string keys, as Checkpoint.as_dict() has them.
  defp py_cp(cp), do: Map.new(cp, fn {k, v} -> {to_string(k), v} end)

  defp frames(<<>>), do: []

  defp frames(bin) do
    {:ok, %{frame_size: size}} = :tether_frame.header(bin)
    <<frame::binary-size(size), rest::binary>> = bin
    [frame | frames(rest)]
  end

  defp read_all(source, opts \\ []), do: Tether.Stream.read(source, opts) |> Enum.to_list()

  defp stream_error(fun) do
    e = assert_raise Tether.Error, fun
    assert {:stream, why, info} = e.reason
    assert Exception.message(e) =~ "chunk #{info.chunk}"
    {why, info}
  end

  @values [%{"a" => 1, "b" => [1, 2.5, "s"]}, [1, 2, 3], "text", 12_345_678_901_234_567_890, nil, 3.5,
           "bytes value", {1, "x"}]

  setup do
    {:ok, dir: TestPython.tmp_dir!()}
  end

  describe "reading what Python writes" do
    test "values, with and without gzip, crc32 and xxh3-64 checksums", %{dir: dir} do
      for compression <- ["none", "gzip"], checksum <- ["crc32", "xxh3-64"] do
        path = Path.join(dir, "values-#{compression}-#{checksum}.tthr")
        cp = py_write!(path, "values", compression: compression, checksum: checksum)
        assert read_all(path) == @values
        assert read_all({:binary, File.read!(path)}) == @values
        {:ok, summary} = Tether.Stream.verify(path)
        assert summary == %{id: cp["stream_id"], count: cp["seq"], bytes: cp["offset"], digest: cp["digest"]}
        assert summary.count == length(@values)
      end
    end

    test "rows Python writes for the BEAM arrive as lists of maps, however many", %{dir: dir} do
      path = Path.join(dir, "rows.tthr")
      # 256 rows and more went to Arrow, and arrived as IPC bytes a reader could not tell from raw ones.
      py_write!(path, "rows", reader: "beam", rows: [255, 256, 1000])
      for {rows, n} <- Enum.zip(read_all(path), [255, 256, 1000]) do
        assert length(rows) == n and hd(rows) == %{"id" => 0, "name" => "n0"}
      end
    end

    test "gzip chunks are compressed on the wire and come back equal", %{dir: dir} do
      path = Path.join(dir, "buffer.tthr")
      py_write!(path, "buffer", compression: "gzip", chunk_size: 1000)
      comps = for f <- frames(File.read!(path)), do: elem(Tether.inspect(f), 1).compression
      # The last chunk (240 distinct bytes) does not shrink, so Python stores it as it is.
      assert length(comps) == 12 and Enum.take(comps, 10) == List.duplicate(:gzip, 10)
      parts = read_all(path)
      assert length(parts) == 11 and Enum.all?(parts, &(byte_size(&1) <= 1000))
      assert IO.iodata_to_binary(parts) == :binary.copy(:erlang.list_to_binary(Enum.to_list(0..255)), 40)
    end

    test "an ndarray in slices", %{dir: dir} do
      path = Path.join(dir, "array.tthr")
      py_write!(path, "array", chunk_size: 1024)
      parts = read_all(path)
      # 1 KiB chunks of 32-byte rows: 32 rows a chunk.
      assert Enum.map(parts, & &1.shape) == List.duplicate({32, 4}, 7) ++ [{26, 4}]
      assert Enum.all?(parts, &(&1.type == {:f, 64}))
      data = parts |> Enum.map(& &1.data) |> IO.iodata_to_binary()
      assert data == for(i <- 0..999, into: <<>>, do: <<i * 1.0::float-little-64>>)
    end

    test "a table as Arrow record batches, which Python puts back together", %{dir: dir} do
      path = Path.join(dir, "table.tthr")
      py_write!(path, "table", chunk_size: 256)
      batches = read_all(path)
      assert length(batches) > 1 and Enum.all?(batches, &is_binary/1)
      back = Path.join(dir, "batches.tthr")
      {:ok, _} = Tether.Stream.write(batches, back)
      assert py!("arrow_check", back) == true
    end
  end

  describe "a broken stream is an error naming the chunk" do
    setup %{dir: dir} do
      path = Path.join(dir, "good.tthr")
      py_write!(path, "values")
      {:ok, frames: frames(File.read!(path))}
    end

    defp bin(frames), do: {:binary, IO.iodata_to_binary(frames)}

    test "cut inside a frame, and cut before the end frame", %{frames: frames} do
      whole = IO.iodata_to_binary(frames)
      cut = byte_size(whole) - 10
      {why, info} = stream_error(fn -> read_all({:binary, binary_part(whole, 0, cut)}) end)
      assert why == :truncated and info.chunk == 8
      {why, info} = stream_error(fn -> read_all(bin(Enum.take(frames, 5))) end)
      assert why == :incomplete and info.chunk == 5
      assert %{seq: 5, stream_id: id} = info.checkpoint
      assert is_binary(id) and byte_size(id) == 32
      assert {:error, {:stream, :empty, _}} = Tether.Stream.verify({:binary, ""})
    end

    test "a chunk removed, two chunks swapped, a chunk repeated", %{frames: frames} do
      removed = List.delete_at(frames, 2)
      {why, info} = stream_error(fn -> read_all(bin(removed)) end)
      assert {why, info.chunk, info.got_seq} == {:missing_chunk, 2, 3}

      [a, b, c | rest] = frames
      {why, info} = stream_error(fn -> read_all(bin([a, c, b | rest])) end)
      assert {why, info.chunk, info.got_seq} == {:missing_chunk, 1, 2}

      {why, info} = stream_error(fn -> read_all(bin([a, b, b, c | rest])) end)
      assert {why, info.chunk, info.got_seq} == {:out_of_order, 2, 1}
      assert {:error, {:stream, :out_of_order, %{chunk: 2}}} = Tether.Stream.verify(bin([a, b, b, c | rest]))
    end

    test "a chunk from another stream", %{frames: frames, dir: dir} do
      other = Path.join(dir, "other.tthr")
      py_write!(other, "values")
      foreign = Enum.at(frames(File.read!(other)), 3)
      {why, info} = stream_error(fn -> read_all(bin(List.replace_at(frames, 3, foreign))) end)
      assert why == :foreign_chunk and info.chunk == 3
      assert info.got_id != info.stream_id
    end

    test "a flipped payload byte, before anything decodes it", %{frames: frames} do
      f = Enum.at(frames, 2)
      size = byte_size(f)
      <<head::binary-size(size - 1), last>> = f
      flipped = List.replace_at(frames, 2, head <> <<bxor(last, 0x40)>>)
      {why, info} = stream_error(fn -> read_all(bin(flipped)) end)
      assert why == :checksum_mismatch and info.chunk == 2
      assert info.stored != info.computed
      assert {:error, {:stream, :checksum_mismatch, %{chunk: 2}}} = Tether.Stream.verify(bin(flipped))
    end

    test "position: where junk after the end frame starts, and a file offset from a device read mid-file", %{frames: frames, dir: dir} do
      whole = IO.iodata_to_binary(frames)
      {why, info} = stream_error(fn -> read_all({:binary, whole <> "JUNK"}) end)
      assert {why, info.position, info.bytes} == {:trailing_bytes, byte_size(whole), 4}
      path = Path.join(dir, "prefixed.tthr")
      File.write!(path, ["HEADER--", binary_part(whole, 0, byte_size(whole) - 3)])
      {:ok, dev} = :file.open(path, [:read, :binary, :raw])
      {:ok, "HEADER--"} = :file.read(dev, 8)
      assert {:error, {:stream, :truncated, %{position: at}}} = :tether_stream.verify(dev)
      :ok = :file.close(dev)
      assert at == 8 + IO.iodata_length(Enum.drop(frames, -1))
      # resume: onto a directory is the open's error, not a size read off the directory.
      cp = %{stream_id: String.duplicate("a", 32), seq: 1, offset: 1, digest: 0}
      assert {:error, {:stream, :io, %{reason: :eisdir}}} = Tether.Stream.write(["x"], dir, resume: cp)
    end

    test "a damaged chunk in a file: its position is where to truncate, then the writer resumes", %{frames: frames, dir: dir} do
      path = Path.join(dir, "damaged.tthr")
      f = Enum.at(frames, 2)
      <<head::binary-size(byte_size(f) - 1), last>> = f
      File.write!(path, List.replace_at(frames, 2, head <> <<bxor(last, 0x40)>>))
      {why, info} = stream_error(fn -> read_all(path) end)
      # The chunk's first byte in the file: the offset is the stream's payload bytes, not the file's.
      assert why == :checksum_mismatch and info.position == IO.iodata_length(Enum.take(frames, 2))
      assert Exception.message(%Tether.Error{reason: {:stream, why, info}}) =~ "position: #{info.position}"
      assert {:error, {:stream, :append_mismatch, %{hint: hint}}} =
               Tether.Stream.write(["again"], path, resume: info.checkpoint, append: true)
      assert hint =~ "truncate the file to the reader error's position"
      {:ok, fd} = :file.open(path, [:read, :write, :binary])
      {:ok, _} = :file.position(fd, info.position)
      :ok = :file.truncate(fd)
      :ok = :file.close(fd)
      assert {:ok, %{seq: 3}} = Tether.Stream.write(["again"], path, resume: info.checkpoint, append: true)
      assert length(read_all(path)) == 3
    end

    test "an end frame whose digest, count or bytes are wrong", %{frames: frames} do
      {chunks, [good_end]} = Enum.split(frames, -1)
      {:ok, %{metadata: %{"stream" => info}}} = Tether.inspect(good_end)
      # The writer's own end frame, rebuilt with one field changed (all its CRCs valid).
      forge = fn changes ->
        stream = Map.merge(info, changes)
        {id, name, type, payload} = :tether_formats.none()
        :tether_frame.build(id, name, type, payload, %{stream: stream}) |> IO.iodata_to_binary()
      end

      assert {:ok, _} = Tether.Stream.verify(bin(chunks ++ [forge.(%{})]))

      for {key, field} <- [{"digest", :digest}, {"count", :count}, {"bytes", :bytes}] do
        bad = forge.(%{key => info[key] + 1})
        {why, err} = stream_error(fn -> read_all(bin(chunks ++ [bad])) end)
        assert {why, err.chunk, err.field} == {:end_mismatch, 8, field}
        assert err.declared == info[key] + 1 and err.computed == info[key]
      end
    end

    test "an end frame that carries a payload", %{frames: frames} do
      {chunks, [good_end]} = Enum.split(frames, -1)
      {:ok, %{metadata: %{"stream" => info}}} = Tether.inspect(good_end)
      {id, name, type, _} = :tether_formats.none()
      # Every CRC valid: data put in the end frame, which no reader would decode.
      bad = :tether_frame.build(id, name, type, "hidden", %{stream: info}) |> IO.iodata_to_binary()
      {why, err} = stream_error(fn -> read_all(bin(chunks ++ [bad])) end)
      assert {why, err.field, err.declared, err.computed} == {:end_mismatch, :payload, 6, 0}
      assert err.hint =~ "a writer's holds none"
      assert {:error, {:stream, :end_mismatch, %{field: :payload}}} = Tether.Stream.verify(bin(chunks ++ [bad]))
    end

    test "bytes after the end frame, and a frame that is no chunk", %{frames: frames, dir: dir} do
      {why, info} = stream_error(fn -> read_all(bin(frames ++ ["junk"])) end)
      assert {why, info.bytes} == {:trailing_bytes, 4}
      # In a file they are counted too (a probe of one byte used to say 1).
      path = Path.join(dir, "trailing.tthr")
      File.write!(path, [frames, :binary.copy("j", 17)])
      {why, info} = stream_error(fn -> read_all(path) end)
      assert {why, info.bytes} == {:trailing_bytes, 17}
      assert {:error, {:stream, :trailing_bytes, %{bytes: 17}}} = Tether.Stream.verify(path)
      plain = Tether.encode(%{"not" => "a chunk"}) |> IO.iodata_to_binary()
      {why, info} = stream_error(fn -> read_all(bin(List.insert_at(frames, 1, plain))) end)
      assert {why, info.chunk} == {:not_a_chunk, 1}
    end

    test "values before the break are emitted, lazily", %{frames: frames} do
      removed = List.delete_at(frames, 3)
      assert Tether.Stream.read(bin(removed)) |> Enum.take(3) == Enum.take(@values, 3)
    end
  end

  describe "bounded memory" do
    test "a chunk over max_frame is refused after reading only its header", %{dir: dir} do
      path = Path.join(dir, "big.tthr")
      py_write!(path, "buffer", chunk_size: 8000)
      {:ok, dev} = File.open(path, [:read, :binary, :raw])
      {:ok, r} = :tether_stream.open(dev, %{max_frame: 4000})
      assert {:error, {:stream, :too_large, %{chunk: 0, max_frame: 4000, size: size}}} = :tether_stream.next(r)
      assert size > 8000
      assert {:ok, 64} = :file.position(dev, :cur)
      File.close(dev)
    end

    test "a multi-chunk file larger than max_frame reads one frame at a time", %{dir: dir} do
      path = Path.join(dir, "many.tthr")
      py_write!(path, "buffer", chunk_size: 1000)
      assert File.stat!(path).size > 7 * 2000
      {:ok, dev} = File.open(path, [:read, :binary, :raw])
      {:ok, r0} = :tether_stream.open(dev, %{max_frame: 2000})
      {:ok, part, r1} = :tether_stream.next(r0)
      # One chunk in, the file position is at the second frame, not at the end.
      {:ok, pos} = :file.position(dev, :cur)
      assert byte_size(part) == 1000 and pos < 2000
      {:ok, _, _} = :tether_stream.next(r1)
      File.close(dev)
      assert read_all(path, max_frame: 2000) |> IO.iodata_to_binary() |> byte_size() == 10_240
    end
  end

  describe "writing what Python reads" do
    test "Python's StreamReader and verify_stream accept an Elixir stream", %{dir: dir} do
      terms = [%{"k" => [1, 2]}, "raw chunk", 42, [1.5, "s"], :binary.copy("z", 2500)]
      expected = [%{"k" => [1, 2]}, "raw chunk", 42, [1.5, "s"], :binary.copy("z", 1000), :binary.copy("z", 1000),
                  :binary.copy("z", 500)]

      for compression <- [:none, :gzip] do
        path = Path.join(dir, "ex-#{compression}.tthr")
        {:ok, cp} = Tether.Stream.write(terms, path, compression: compression, chunk_size: 1000)
        out = py!("read", path)
        assert out["values"] == expected
        assert out["complete"] == true
        assert out["checkpoint"] == py_cp(cp)
        assert out["verify"] == %{"stream_id" => cp.stream_id, "chunks" => 7, "bytes" => cp.offset}
        flags = for f <- frames(File.read!(path)), do: elem(:tether_frame.header(f), 1).flags
        assert Enum.all?(flags, &(band(&1, 1) == 1))
      end
    end

    test "float_atoms: true has Python read :nan and the infinities as floats, in streams and frames",
         %{dir: dir} do
      marked = Path.join(dir, "nan.tthr")
      {:ok, _} = Tether.Stream.write([[:nan, 1.0, :infinity], %{"x" => :neg_infinity}], marked, float_atoms: true)
      plain = Path.join(dir, "plain.tthr")
      {:ok, _} = Tether.Stream.write([[:nan]], plain)
      frame = Path.join(dir, "frame.tthr")
      File.write!(frame, Tether.encode([:nan, :neg_infinity], float_atoms: true))

      code = """
      import sys, tether
      from tether.stream import StreamReader
      print(repr([list(StreamReader(open(p, "rb"))) for p in sys.argv[1:3]]))
      print(repr(tether.loads(open(sys.argv[3], "rb").read())))
      """

      {out, status} = System.cmd(TestPython.python(), ["-c", code, marked, plain, frame],
                                 env: [{"PYTHONPATH", TestPython.pythonpath()}], stderr_to_stdout: true)

      assert {status, out} ==
               {0, "[[[nan, 1.0, inf], {b'x': -inf}], [[Atom('nan')]]]\n[nan, -inf]\n"}

      assert_raise ArgumentError, ~r/float_atoms/, fn -> Tether.encode([:nan], float_atoms: :yes) end
    end

    test "tensors as ndarray chunks Python reads as NumPy arrays", %{dir: dir} do
      path = Path.join(dir, "tensors.tthr")
      f32 = for x <- 1..6, into: <<>>, do: <<x * 0.5::float-32-native>>
      {:ok, w0} = :tether_stream.open_writer({:file, path}, %{})
      {:ok, w1} = :tether_stream.write_tensor(w0, f32, {:f, 32}, {2, 3})
      {:ok, w2} = :tether_stream.write_tensor(w1, <<1, 2, 3, 4>>, {:u, 8}, {4})
      assert {:error, {:bad_argument, :tensor, msg}} = :tether_stream.write_tensor(w2, <<1>>, {:f, 64}, {3})
      assert msg =~ "size matches the type and shape"
      assert {:error, {:bad_argument, :tensor, _}} = :tether_stream.write_tensor(w2, <<1>>, :f64, {1})
      {:ok, _} = :tether_stream.close(w2)
      assert py!("read", path)["values"] == [
               %{"dtype" => "<f4", "shape" => [2, 3], "data" => f32},
               %{"dtype" => "|u1", "shape" => [4], "data" => <<1, 2, 3, 4>>}
             ]

      assert [%{type: {:f, 32}, shape: {2, 3}, data: ^f32}, %{type: {:u, 8}, data: <<1, 2, 3, 4>>}] = read_all(path)
    end

    test "Enum.into a stream, and a producer that raises leaves it incomplete", %{dir: dir} do
      path = Path.join(dir, "into.tthr")
      cp = Enum.into(Stream.map(1..5, &%{"i" => &1}), Tether.Stream.into(path, compression: :gzip))
      assert cp.seq == 5
      assert py!("read", path)["values"] == for(i <- 1..5, do: %{"i" => i})

      broken = Stream.map(1..5, fn 4 -> raise "producer failed"; i -> i end)
      assert_raise RuntimeError, fn -> Enum.into(broken, Tether.Stream.into(path)) end
      {why, info} = stream_error(fn -> read_all(path) end)
      assert {why, info.chunk} == {:incomplete, 3}
      File.rm!(path)
      assert_raise RuntimeError, fn -> Tether.Stream.write(broken, path) end
      assert {:error, {:stream, :incomplete, %{chunk: 3}}} = Tether.Stream.verify(path)
    end

    test "bad options are errors, and so is writing past close", %{dir: dir} do
      path = Path.join(dir, "opts.tthr")
      assert {:error, {:bad_option, :compression, msg}} = Tether.Stream.write([1], path, compression: :lz4)
      assert msg =~ "one of none, gzip" and msg =~ "lz4"
      assert {:error, {:bad_option, :resume, msg}} = Tether.Stream.write([1], path, resume: %{seq: 1})
      assert msg =~ "checkpoint/1" and msg =~ "got %{seq: 1}"
      assert {:error, {:bad_option, :resume, erl}} = :tether_stream.open_writer({:file, path}, %{resume: %{seq: 1}})
      assert erl =~ "got \#{seq => 1}"
      # As Python's Checkpoint.from_dict: unknown keys (a misspelt ended) and numbers past 2**64-1 are refused.
      cp = %{stream_id: "ab", seq: 1, offset: 0, digest: 0}
      assert {:error, {:bad_option, :resume, why}} = Tether.Stream.write([1], path, resume: Map.put(cp, :endd, true))
      assert why =~ "unknown checkpoint key(s) [:endd]"
      for {key, big} <- [seq: 1 <<< 64, offset: 1 <<< 64] do
        assert {:error, {:bad_option, :resume, _}} = Tether.Stream.write([1], path, resume: Map.put(cp, key, big))
      end
      assert {:error, {:bad_option, :chunk_size, _}} = Tether.Stream.write([1], path, chunk_size: 0)
      assert {:error, {:bad_option, :max_frame, _}} = Tether.Stream.verify(path, max_frame: -1)
      assert {:error, {:bad_argument, :source, _}} = Tether.Stream.verify(5)
      assert {:error, {:bad_argument, :sink, _}} = :tether_stream.open_writer("a binary", [])
      # A misspelt option is refused with the valid names, not silently ignored.
      assert {:error, {:bad_option, :compresion, msg}} = Tether.Stream.write([1], path, compresion: :gzip)
      assert msg =~ "valid options are: compression, level, chunk_size"
      assert {:error, {:bad_option, :max_frames, _}} = Tether.Stream.verify(path, max_frames: 10)
      assert {:error, {:bad_option, :options, _}} = Tether.Stream.verify(path, 5)
      assert_raise ArgumentError, ~r/invalid option :max_fram/, fn -> Tether.Stream.read(path, max_fram: 1) |> Enum.to_list() end
      assert_raise ArgumentError, ~r/invalid option :compresion/, fn -> Enum.into([1], Tether.Stream.into(path, compresion: :gzip)) end
      {:ok, w} = :tether_stream.open_writer({:file, path}, %{})
      {:ok, %{seq: 0}} = :tether_stream.close(w)
      # The writer closed the file it opened: a stale writer cannot add frames after the end frame.
      assert {:error, {:stream, :io, %{chunk: 0}}} = :tether_stream.write(w, 1)
      assert {:ok, %{count: 0}} = Tether.Stream.verify(path)
    end
  end

  describe "resuming" do
    test "Elixir finishes a stream Python stopped, and Python reads the whole", %{dir: dir} do
      path = Path.join(dir, "partial.tthr")
      stopped = py_write!(path, "values", count: 3, abort: true)
      {why, info} = stream_error(fn -> read_all(path) end)
      assert why == :incomplete and info.checkpoint == %{stream_id: stopped["stream_id"], seq: 3,
                                                         offset: stopped["offset"], digest: stopped["digest"],
                                                         ended: false}

      {:ok, cp} = Tether.Stream.write(["four", %{"five" => 5}], path, resume: info.checkpoint, append: true)
      assert cp.seq == 5 and cp.stream_id == stopped["stream_id"]
      out = py!("read", path)
      assert out["complete"] and length(out["values"]) == 5
      assert Enum.drop(out["values"], 3) == ["four", %{"five" => 5}]
      assert out["verify"]["chunks"] == 5
      assert read_all(path) == Enum.take(@values, 3) ++ ["four", %{"five" => 5}]
    end

    test "a reader given the checkpoint accepts the continuation alone", %{dir: dir} do
      first = Path.join(dir, "first.tthr")
      rest = Path.join(dir, "rest.tthr")
      stopped = py_write!(first, "values", count: 2, abort: true)
      py_write!(rest, "strings", values: ["c", "d"], resume: stopped)
      assert read_all(rest, resume: stopped) == ["c", "d"]
      {:ok, summary} = Tether.Stream.verify(rest, resume: stopped)
      assert summary.count == 4
      # Without the checkpoint the continuation is not a stream on its own.
      {why, info} = stream_error(fn -> read_all(rest) end)
      assert {why, info.chunk, info.got_seq} == {:missing_chunk, 0, 2}
      # No chunk read, so no checkpoint: the hint says to read the part with the earlier part's checkpoint.
      assert info.checkpoint == nil and info.hint =~ "read it with resume:"
    end

    test "a complete stream's checkpoint is ended, and no writer resumes from it", %{dir: dir} do
      path = Path.join(dir, "complete.tthr")
      {:ok, cp} = Tether.Stream.write(["one", "two"], path)
      assert cp.ended and cp.seq == 2
      before = File.read!(path)
      # Appending after the end frame used to answer {:ok, _} and leave a stream no reader accepts.
      assert {:error, {:bad_option, :resume, why}} = Tether.Stream.write(["three"], path, resume: cp, append: true)
      assert why =~ "complete stream" and why =~ "abort"
      assert File.read!(path) == before
      assert {:ok, %{count: 2}} = Tether.Stream.verify(path)
      # Python's checkpoint after close() says so too, and the BEAM refuses it; so does Python a BEAM one.
      done = py_write!(Path.join(dir, "py-complete.tthr"), "strings", values: ["a"])
      assert done["ended"] == true
      assert {:error, {:bad_option, :resume, _}} = Tether.Stream.write(["b"], path, resume: done, append: true)
      assert_raise ExUnit.AssertionError, ~r/complete stream/, fn ->
        py_write!(Path.join(dir, "py-more.tthr"), "strings", values: ["c"], resume: py_cp(cp))
      end
      # A reader's checkpoint between chunks is not ended, nor is an aborted writer's; one stored before
      # `ended` existed reads as not ended.
      {:ok, r0} = :tether_stream.open({:file, path})
      {:ok, "one", r1} = :tether_stream.next(r0)
      assert %{ended: false, seq: 1} = :tether_stream.checkpoint(r1)
      {:ok, "two", r2} = :tether_stream.next(r1)
      # A reader's checkpoint from just before the end frame is not ended, but the file ends with that
      # frame: appending from it is refused too, and so is appending from a place the file has passed.
      stale = :tether_stream.checkpoint(r2)
      assert %{ended: false, seq: 2} = stale
      :ok = :tether_stream.close(r2)
      for cp <- [stale, :tether_stream.checkpoint(r1)] do
        assert {:error, {:stream, :append_mismatch, info}} = Tether.Stream.write(["x"], path, resume: cp, append: true)
        assert info.hint =~ "last frame must be the chunk before it"
      end
      # A new stream appended after a complete one made the file unreadable too.
      assert {:error, {:stream, :append_mismatch, info}} = Tether.Stream.write(["x"], path, append: true)
      assert info.hint =~ "a new stream goes only onto an empty or new file"
      assert File.read!(path) == before
      {:ok, aborted} = :tether_stream.open_writer({:file, Path.join(dir, "a.tthr")}, %{})
      {:ok, %{ended: false}} = :tether_stream.abort(aborted)
      legacy = Map.delete(:tether_stream.checkpoint(r1), :ended)
      assert {:ok, _} = :tether_stream.open(<<>>, %{resume: legacy})
    end

    test "appending from a checkpoint: a cut last frame is named, a new continuation file is fine", %{dir: dir} do
      path = Path.join(dir, "cut.tthr")
      {:ok, w0} = :tether_stream.open_writer({:file, path}, %{})
      {:ok, w1} = :tether_stream.write(w0, "one")
      {:ok, w2} = :tether_stream.write(w1, :binary.copy("two", 100))
      {:ok, _} = :tether_stream.abort(w2)
      # A writer that died inside its second chunk: the reader's error gives the checkpoint after the first.
      File.write!(path, binary_part(File.read!(path), 0, File.stat!(path).size - 10))
      {_why, info} = stream_error(fn -> read_all(path) end)
      cp = info.checkpoint
      assert {:error, {:stream, :append_mismatch, %{found: {:cut, pos, _}, hint: hint}}} =
               Tether.Stream.write(["two"], path, resume: cp, append: true)
      assert hint =~ "truncate the file to that size"
      {:ok, f} = :file.open(path, [:read, :write, :binary])
      {:ok, _} = :file.position(f, pos)
      :ok = :file.truncate(f)
      :ok = :file.close(f)
      assert {:ok, %{seq: 2}} = Tether.Stream.write(["two"], path, resume: cp, append: true)
      assert read_all(path) == ["one", "two"]
      # Appending a continuation onto a file that does not exist yet makes a continuation file.
      rest = Path.join(dir, "rest.tthr")
      assert {:ok, _} = Tether.Stream.write(["more"], rest, resume: cp, append: true)
      assert read_all(rest, resume: cp) == ["more"]
    end

    test "Python finishes a stream Elixir stopped", %{dir: dir} do
      path = Path.join(dir, "ex-partial.tthr")
      {:ok, w0} = :tether_stream.open_writer({:file, path}, %{})
      {:ok, w1} = :tether_stream.write(w0, "one")
      {:ok, w2} = :tether_stream.write(w1, %{"two" => 2})
      {:ok, cp} = :tether_stream.abort(w2)
      done = py_write!(path, "strings", values: ["three"], resume: py_cp(cp), append: true)
      assert done["seq"] == 3
      assert read_all(path) == ["one", %{"two" => 2}, "three"]
      assert py!("read", path)["values"] == ["one", %{"two" => 2}, "three"]
    end
  end

  describe "xxh3-64 agrees with Python's xxhash" do
    test "on random inputs of every length class (the chain digest: see the values test)", %{dir: dir} do
      path = Path.join(dir, "xxh3.etf")
      code = ~S"""
      import os, random, sys, xxhash
      lens = list(range(0, 260)) + [random.randrange(260, 9000) for _ in range(30)] + [1024, 1025, 2048, 4097]
      cases = [(d, xxhash.xxh3_64_intdigest(d)) for d in (os.urandom(n) for n in lens)]
      from tether import etf
      open(sys.argv[1], "wb").write(etf.encode(cases))
      """

      {_, 0} = System.cmd(TestPython.python(), ["-c", code, path], env: [{"PYTHONPATH", TestPython.pythonpath()}])
      cases = :erlang.binary_to_term(File.read!(path))
      assert length(cases) == 294
      for {data, want} <- cases, do: assert({byte_size(data), :tether_xxh3.hash64(data)} == {byte_size(data), want})
    end
  end

  test "a path given as a charlist or chardata (Path.t()) is a file, as a binary path is" do
    path = Path.join(System.tmp_dir!(), "tether-charlist-#{System.unique_integer([:positive])}.tthr")
    {:ok, _} = Tether.Stream.write([1, 2], String.to_charlist(path))
    assert [1, 2] = Tether.Stream.read(String.to_charlist(path)) |> Enum.to_list()
    assert {:ok, %{count: 2}} = Tether.Stream.verify([Path.dirname(path), ~c"/", Path.basename(path)])
    File.rm!(path)
  end
end
