defmodule Tether.Stream.Sink do
  @moduledoc """
  Where `Tether.Stream.into/2` collects to: a stream sink and the writer's
  options. Build it with `Tether.Stream.into/2`.
  """

  defstruct [:sink, opts: %{}]

  @type t :: %__MODULE__{sink: term(), opts: keyword() | map()}

  defimpl Collectable do
    def into(%{sink: sink, opts: opts}) do
      writer =
        case :tether_stream.open_writer(sink, opts) do
          {:ok, w} -> w
          {:error, {:bad_option, _, _} = reason} -> Tether.Options.raise!(:stream_writer, opts, reason)
          {:error, reason} -> raise Tether.Error, reason: Tether.Stream.elixir_reason(reason)
        end

      {writer, &collect/2}
    end

    defp collect(w, {:cont, term}) do
      case :tether_stream.write(w, term) do
        {:ok, w} ->
          w

        {:error, reason} ->
          {:ok, _} = :tether_stream.abort(w)
          raise Tether.Error, reason: Tether.Stream.elixir_reason(reason)
      end
    end

    defp collect(w, :done) do
      case :tether_stream.close(w) do
        {:ok, checkpoint} -> checkpoint
        {:error, reason} -> raise Tether.Error, reason: Tether.Stream.elixir_reason(reason)
      end
    end

    # Collecting stopped early (an exception in the producer): no end frame, the file closed.
    defp collect(w, :halt) do
      {:ok, _} = :tether_stream.abort(w)
      :ok
    end
  end
end

defmodule Tether.Stream do
  @moduledoc """
  tether streams from Elixir: read, check, resume and write the chunked
  streams Python's `tether.stream` writes and reads (`docs/format.md` §9).

  A stream is frames back to back: one chunk frame per value (binaries are
  cut into raw chunks), then an end frame holding the chunk count, the byte
  count and a digest chained over every chunk. Reading holds one chunk at a
  time; every chunk's checksum, stream id, number and offset are checked
  before its value is decoded, and the end frame is checked against all the
  chunks. A stream that is cut, reordered, mixed with another or altered
  raises `Tether.Error` with `reason: {:stream, why, info}`, where `info`
  names the chunk (`:chunk`), where its frame starts in the input
  (`:position`: a byte offset in the file, to truncate a damaged file at
  before appending; counted from where reading began for a pipe; for bytes
  after the end frame, where they start) and holds the `:checkpoint` to
  resume from. Before the first chunk is read there is no stream to resume:
  `:checkpoint` and `:stream_id` are then `nil`.

      iex> path = Path.join(System.tmp_dir!(), "tether-doc-#{System.unique_integer([:positive])}.tthr")
      iex> {:ok, %{seq: 3}} = Tether.Stream.write([%{"n" => 1}, "raw bytes", [1, 2]], path)
      iex> Tether.Stream.read(path) |> Enum.to_list()
      [%{"n" => 1}, "raw bytes", [1, 2]]
      iex> {:ok, %{count: 3}} = Tether.Stream.verify(path)
      iex> File.rm!(path)
      :ok

  A source is a path, `{:binary, bytes}` (the stream's bytes in memory;
  values are sub-binaries of them), or an IO device opened in binary mode
  (`File.open!(path, [:read, :binary])`), which is not read past the end frame.
  Any io server will do: a `StringIO` (`StringIO.open(bytes, encoding: :latin1)`),
  standard input (`Process.group_leader()`, after
  `:io.setopts(:standard_io, binary: true, encoding: :latin1)` so bytes arrive as
  they are), or one you write around a socket; errors' `:position` then counts
  from where reading began, as for a pipe. A process that does not answer an io
  request within 5 s is refused (`{:bad_argument, :source, message}`), not
  waited on forever.

  From Erlang the same is `:tether_stream` (`open/2`, `next/1`, `verify/2`,
  `open_writer/2`, `write/2`, `close/1`, `abort/1`, `checkpoint/1`), which
  also writes an Nx-style tensor as one ndarray chunk Python reads as a NumPy
  array: `:tether_stream.write_tensor(writer, Nx.to_binary(t), Nx.type(t), Nx.shape(t))`.

  Chunks Python writes with `compression="lz4"` or `"zstd"` (or `"auto"`,
  which may pick them) do not decode on the BEAM: write with `compression="gzip"`
  or `"none"`. Chunks with either payload checksum (crc32, Python's default,
  or xxh3-64) are verified.
  """

  @typedoc "A stream source: a path, `{:binary, bytes}` or an IO device."
  @type source :: Path.t() | {:binary, binary()} | pid() | :file.io_device()

  @typedoc "Where a stream stands, as Python's `Checkpoint.as_dict()`."
  @type checkpoint :: %{
          stream_id: binary(),
          seq: non_neg_integer(),
          offset: non_neg_integer(),
          digest: non_neg_integer(),
          ended: boolean()
        }

  @typedoc "What a complete stream held."
  @type summary :: %{id: binary(), count: non_neg_integer(), bytes: non_neg_integer(), digest: non_neg_integer()}

  @doc """
  A lazy `Stream` of the chunk values of the stream at `source`.

  The source is opened when the stream is run and closed when it ends or
  halts. A broken or incomplete stream raises `Tether.Error` (reason
  `{:stream, why, info}`) at the chunk where it breaks; values before it
  have been emitted.

  Options: `:max_frame` (largest chunk frame read, default 256 MiB: the
  memory one chunk may take), `:resume` (a checkpoint: accept a stream that
  continues from it, as Python's `StreamReader(resume=)`), `:safe` and
  `:max_uncompressed_size` as in `Tether.decode/2`.

      iex> path = Path.join(System.tmp_dir!(), "tether-doc-#{System.unique_integer([:positive])}.tthr")
      iex> {:ok, _} = Tether.Stream.write(1..3, path)
      iex> Tether.Stream.read(path) |> Enum.sum()
      6
      iex> File.write!(path, binary_part(File.read!(path), 0, 500))
      iex> try do
      ...>   Tether.Stream.read(path) |> Enum.to_list()
      ...> rescue
      ...>   e in Tether.Error -> elem(e.reason, 1)
      ...> end
      :truncated
      iex> File.rm!(path)
      :ok
  """
  @spec read(source(), keyword() | map()) :: Enumerable.t()
  def read(source, opts \\ []) do
    Stream.resource(
      fn -> open!(source, opts) end,
      fn
        :done -> {:halt, :done}
        reader -> next(reader)
      end,
      fn
        :done -> :ok
        reader -> :tether_stream.close(reader)
      end
    )
  end

  defp open!(source, opts) do
    case :tether_stream.open(erl_source(source), opts) do
      {:ok, reader} -> reader
      {:error, {:bad_option, _, _} = reason} -> Tether.Options.raise!(:stream_reader, opts, reason)
      {:error, reason} -> raise Tether.Error, reason: elixir_reason(reason)
    end
  end

  defp next(reader) do
    case :tether_stream.next(reader) do
      {:ok, value, reader} -> {[value], reader}
      {:done, _summary} -> {:halt, :done}
      # read/2's after function closes the reader.
      {:error, reason} -> raise Tether.Error, reason: elixir_reason(reason)
    end
  end

  @doc """
  Check a whole stream without decoding any chunk: `{:ok, summary}` or
  `{:error, {:stream, why, info}}`. Takes `:max_frame` and `:resume` as `read/2`.

      iex> Tether.Stream.verify({:binary, ""})
      ...> |> elem(1) |> elem(1)
      :empty
  """
  @spec verify(source(), keyword() | map()) :: {:ok, summary()} | {:error, term()}
  def verify(source, opts \\ []) do
    case :tether_stream.verify(erl_source(source), opts) do
      {:error, {:bad_option, _, _} = reason} -> {:error, Tether.Options.reword(:stream_reader, opts, reason)}
      {:error, reason} -> {:error, elixir_reason(reason)}
      result -> result
    end
  end

  @doc """
  Write every element of `enumerable` to `sink` as a stream, then the end
  frame: `{:ok, checkpoint}` after it, or `{:error, reason}` (the stream is
  left without its end frame). The checkpoint after the end frame has
  `ended: true`, and `resume:` refuses it: a chunk written after the end
  frame would make the stream unreadable. Binaries become raw chunks (Python reads them
  as `bytes`), other terms etf chunks (Python reads them as it reads any etf
  frame).

  `sink` is a path (created or truncated; `append: true` appends) or an IO
  device opened in binary mode. Options: `compression: :none | :gzip`,
  `level`, `chunk_size` (largest raw chunk, default 8 MiB), `metadata` (user
  metadata on every chunk, plain data as in `Tether.encode/2`), `resume` (a checkpoint from `checkpoint/1` on a
  reader or writer, an error's `info.checkpoint`, or Python's `Checkpoint.as_dict()`: continue that stopped
  stream; with `append: true` onto the same file, the file becomes the whole stream; onto a file that is not
  empty, `resume:` needs `append: true`, since the file would be truncated), `type_versions` (as
  `Tether.encode/2`: registered types written at the versions the reader knows) and `float_atoms: true`
  (as `Tether.encode/2`: Python reads `:nan` and the infinities as floats). A type whose `to_wire`
  raises, or that cannot go down to the reader's version, is `{:error, reason}` (`{:type_failed, ...}`,
  `{:type_downgrade, ...}`; `Tether.Type.format_error/1` words it), the stream left without its end frame.

      iex> path = Path.join(System.tmp_dir!(), "tether-doc-#{System.unique_integer([:positive])}.tthr")
      iex> {:ok, cp} = Tether.Stream.write([:binary.copy("x", 10)], path, chunk_size: 4, compression: :gzip)
      iex> {cp.seq, cp.offset, cp.ended}
      {3, 10, true}
      iex> {:error, {:bad_option, :resume, why}} = Tether.Stream.write(["more"], path, resume: cp, append: true)
      iex> why =~ "complete stream"
      true
      iex> File.rm!(path)
      :ok
  """
  @spec write(Enumerable.t(), Path.t() | pid() | :file.io_device(), keyword() | map()) ::
          {:ok, checkpoint()} | {:error, term()}
  def write(enumerable, sink, opts \\ []) do
    case :tether_stream.open_writer(erl_source(sink), opts) do
      {:ok, writer} ->
        case write_all(enumerable, writer) do
          {:ok, w} ->
            with {:error, reason} <- :tether_stream.close(w), do: {:error, elixir_reason(reason)}

          {{:error, reason}, w} ->
            {:ok, _} = :tether_stream.abort(w)
            {:error, elixir_reason(reason)}
        end

      {:error, {:bad_option, _, _} = reason} ->
        {:error, Tether.Options.reword(:stream_writer, opts, reason)}

      {:error, reason} ->
        {:error, elixir_reason(reason)}
    end
  end

  # An enumerable that raises (or throws, or exits) leaves the stream without its end frame, and the file closed.
  defp write_all(enumerable, writer) do
    Enum.reduce_while(enumerable, {:ok, writer}, fn term, {:ok, w} ->
      case :tether_stream.write(w, term) do
        {:ok, w} -> {:cont, {:ok, w}}
        {:error, _} = error -> {:halt, {error, w}}
      end
    end)
  catch
    kind, reason ->
      {:ok, _} = :tether_stream.abort(writer)
      :erlang.raise(kind, reason, __STACKTRACE__)
  end

  @doc """
  A `Collectable` writing a stream to `sink` (a path or an IO device, with
  the options of `write/3`): each element collected is written as `write/3`
  writes it, and the end frame when the collecting finishes, so
  `Enum.into/2` returns the final checkpoint. A failed write raises
  `Tether.Error` and leaves the stream without its end frame; a bad option
  raises `ArgumentError` when the collecting starts.

      iex> path = Path.join(System.tmp_dir!(), "tether-doc-#{System.unique_integer([:positive])}.tthr")
      iex> %{seq: 2} = Enum.into(["a", %{"b" => 1}], Tether.Stream.into(path))
      iex> Tether.Stream.read(path) |> Enum.to_list()
      ["a", %{"b" => 1}]
      iex> File.rm!(path)
      :ok
  """
  @spec into(Path.t() | pid() | :file.io_device(), keyword() | map()) :: Collectable.t()
  def into(sink, opts \\ []), do: %Tether.Stream.Sink{sink: erl_source(sink), opts: opts}

  @doc """
  The checkpoint of an Erlang reader or writer (`:tether_stream`), as
  Python's `Checkpoint.as_dict()`; it goes to a writer's `:resume` to
  continue the stream, and to a reader's to accept the continuation.
  A `Tether.Error` raised by `read/2` carries it too, in `reason`'s info
  map under `:checkpoint`.

      iex> {:ok, r} = :tether_stream.open("")
      iex> Tether.Stream.checkpoint(r) |> elem(1) |> elem(1)
      :no_chunk_read
  """
  @spec checkpoint(:tether_stream.reader() | :tether_stream.writer()) :: checkpoint() | {:error, term()}
  def checkpoint(reader_or_writer) do
    with {:error, reason} <- :tether_stream.checkpoint(reader_or_writer), do: {:error, elixir_reason(reason)}
  end

  # :tether_stream says :undefined, Erlang's "none", where no chunk was read; Elixir code tests for nil.
  # Public for Tether.Stream.Sink, which raises the same errors.
  @doc false
  def elixir_reason({:stream, why, info}) when is_map(info) do
    undefined = for {key, :undefined} <- info, key in [:stream_id, :checkpoint], into: %{}, do: {key, nil}
    {:stream, why, Map.merge(info, undefined)}
  end

  def elixir_reason(reason), do: reason

  defp erl_source({:binary, bytes}) when is_binary(bytes), do: bytes
  defp erl_source(path) when is_binary(path), do: {:file, path}
  # Path.t() is chardata: a charlist (~c"/tmp/s.tthr") or ["/tmp", "/s.tthr"] names a file too.
  defp erl_source(path) when is_list(path), do: {:file, IO.chardata_to_string(path)}
  defp erl_source(device), do: device
end

