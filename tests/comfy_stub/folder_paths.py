"""Stand-in for ComfyUI's folder_paths: named model folders -> ([paths], allowed extensions)."""
import os

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
models_dir = ""
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}


def reset(base_models_dir: str) -> None:
    """Point the registry at a fresh models directory holding ComfyUI's folders used by the pack."""
    global models_dir
    models_dir = base_models_dir
    folder_names_and_paths.clear()
    for name in ("vae", "text_encoders"):
        folder_names_and_paths[name] = ([os.path.join(models_dir, name)], set(supported_pt_extensions))


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    if folder_name not in folder_names_and_paths:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())   # no extension filter, as ComfyUI
        return
    paths = folder_names_and_paths[folder_name][0]
    if full_folder_path not in paths:
        paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[folder_name][0])


def get_filename_list(folder_name: str) -> list[str]:
    paths, extensions = folder_names_and_paths[folder_name]
    names = set()
    for root in paths:
        for current, _, files in os.walk(root):
            for file in files:
                if not extensions or os.path.splitext(file)[1].lower() in extensions:
                    names.add(os.path.relpath(os.path.join(current, file), root).replace(os.sep, "/"))
    return sorted(names)


def get_full_path(folder_name: str, filename: str):
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for root in folder_names_and_paths[folder_name][0]:
        path = os.path.join(root, filename)
        if os.path.isfile(path):
            return path
    return None
